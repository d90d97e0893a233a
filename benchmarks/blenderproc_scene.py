import blenderproc as bproc

"""Inside ``blenderproc run``: render exported scenes with BlenderProc, timing each annotated frame.

    blenderproc run benchmarks/blenderproc_scene.py SCENES.json OUT_DIR SETTINGS_JSON

Started by ``benchmarks/render_blenderproc.py`` (see there); needs only BlenderProc and numpy.
Per scene: ``bproc.clean_up()``, load the OBJ meshes, set Principled materials, lights, world and
camera (K and pose), render RGB + instance segmentation, write COCO annotations
(``bproc.writer.write_coco_annotations``), and save ``frame_NNNNNN.npz`` (``rgb`` uint8 (H, W, 3),
``ids`` instance ids (H, W), 0 = background). ``timings.json``: seconds per annotated frame, from
the scene's set-up to its annotations on disk.
"""

import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import bpy  # noqa: E402
import numpy as np  # noqa: E402
from mathutils import Matrix, Quaternion, Vector  # noqa: E402


def _material(name: str, m: dict):
    mat = bproc.material.create(name)
    mat.set_principled_shader_value("Base Color", [*m["color"], 1.0])
    mat.set_principled_shader_value("Roughness", float(m["roughness"]))
    mat.set_principled_shader_value("Metallic", float(m["metallic"]))
    mat.set_principled_shader_value("Specular IOR Level", float(m["specular"]))
    return mat


def _light(spec: dict) -> None:
    light = bproc.types.Light()
    light.set_type(spec["type"])
    light.set_energy(float(spec["strength"]))
    light.set_color(spec["color_rgb"])
    light.set_location(spec["location"])
    rot = Vector((0.0, 0.0, -1.0)).rotation_difference(Vector(spec["direction"]).normalized())
    light.set_rotation_euler(rot.to_euler())
    data = light.blender_obj.data
    if spec["type"] == "SUN":
        data.angle = float(spec["size"])
    elif spec["type"] == "AREA":
        data.shape = "SQUARE"
        data.size = float(spec["size"])
    else:
        data.shadow_soft_size = float(spec["size"])


def build(scene: dict) -> None:
    for o in scene["objects"]:
        (obj,) = bproc.loader.load_obj(o["obj"])
        obj.set_location(o["location"])
        obj.set_rotation_euler(Quaternion(o["quat_wxyz"]).to_euler())
        obj.set_cp("category_id", int(o["category_id"]))
        obj.set_cp("instance_id", int(o["instance_id"]))
        obj.replace_materials(_material(f"mat_{o['instance_id']}", o["material"]))
        obj.set_shading_mode("auto", 40)
    sx, sy = scene["support"]["size"]
    plane = bproc.object.create_primitive("PLANE", scale=[sx / 2, sy / 2, 1])
    plane.set_cp("category_id", 0)
    plane.replace_materials(_material("support", scene["support"]["material"]))
    for light in scene["lights"]:
        _light(light)
    bproc.renderer.set_world_background(scene["world"]["color"], strength=scene["world"]["strength"])
    w, h = scene["width"], scene["height"]
    bproc.camera.set_intrinsics_from_K_matrix(np.array(scene["K"]), w, h, *scene["clip"])
    pose = Matrix.Translation(Vector(scene["cam_location"])) @ Matrix(scene["cam_rotation"]).to_4x4()
    bproc.camera.add_camera_pose(np.array(pose))


def main() -> None:
    scenes_file, out_dir, settings = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
    out_dir.mkdir(parents=True, exist_ok=True)
    scenes = json.loads(Path(scenes_file).read_text())
    bproc.init()
    bproc.renderer.set_max_amount_of_samples(int(settings["spp"]))
    bproc.renderer.set_noise_threshold(float(settings["noise_threshold"]))
    bproc.renderer.set_denoiser(settings["denoiser"])
    m = int(settings["max_bounces"])
    bproc.renderer.set_light_bounces(
        diffuse_bounces=m,
        glossy_bounces=m,
        transmission_bounces=m,
        max_bounces=m,
        transparent_max_bounces=max(m, 1),
    )
    bproc.renderer.enable_segmentation_output(
        map_by=["instance", "category_id"], default_values={"category_id": 0}
    )
    seconds = []
    for i, scene in enumerate(scenes):
        t0 = time.perf_counter()
        bproc.clean_up()
        build(scene)
        bpy.context.scene.cycles.seed = int(scene["seed"]) * 1000 + int(scene["frame_index"])
        data = bproc.renderer.render()
        bproc.writer.write_coco_annotations(
            str(out_dir / f"coco_{i:06d}"),
            instance_segmaps=data["instance_segmaps"],
            instance_attribute_maps=data["instance_attribute_maps"],
            colors=data["colors"],
            append_to_existing_output=False,
        )
        seconds.append(time.perf_counter() - t0)
        rgb = np.asarray(data["colors"][0], dtype=np.uint8)
        np.savez_compressed(
            out_dir / f"frame_{i:06d}.npz", rgb=rgb, ids=np.asarray(data["instance_segmaps"][0])
        )
    meta = {
        "seconds_per_frame": seconds,
        "blender_version": bpy.app.version_string,
        "blenderproc_version": getattr(bproc, "__version__", None),
    }
    (out_dir / "timings.json").write_text(json.dumps(meta))


main()
