"""Inside BlenderProc: render synthloop's scenes through BlenderProc's API, timing each annotated frame.

    USE_EXTERNAL_BPY_MODULE=1 PYTHONPATH=REPO $BLENDERPROC_PYTHON benchmarks/blenderproc_scene.py \
        SCENES.json OUT SETTINGS

Started by ``benchmarks/render_blenderproc.py`` (see there), whose docstring says how to make
``BLENDERPROC_PYTHON``. SCENES.json: a list of
``{"spec": SceneSpec JSON, "K": 3x3, "cam_pose": 4x4 world-from-camera (Blender axes)}``.

The scene content is synthloop's, built with the same bpy helpers (meshes with their sharp edges,
procedural materials, support, lights), so both tools shade the same scene. BlenderProc does the
rest, as a BlenderProc user would: ``bproc.init``, ``clean_up`` per scene, world, camera (K and
pose), render settings, RGB + depth + instance segmentation in one render, COCO annotations
(``write_coco_annotations``, which also writes the image) and depth (``write_hdf5``).

Per annotated frame, from ``clean_up`` to its files on disk: wall seconds (``time.perf_counter``)
and this process's CPU seconds (``time.process_time``, every render thread). ``frame_NNNNNN.npz``
(``rgb`` uint8 (H, W, 3), ``ids`` instance ids (H, W), 0 = background) is written outside the
timed span, for the quality scores.
"""

import json
import os
import sys
import time
from pathlib import Path

import blenderproc as bproc
import bpy
import numpy as np

from synthloop.generators.blender_scene import add_light, add_object, add_support, cycles_seed
from synthloop.geometry.meshes import build_mesh
from synthloop.scenes.spec import SceneSpec


def build(scene: dict) -> None:
    """The frame's objects, support and lights (synthloop's builders), world and camera
    (BlenderProc's). Objects keep ``pass_index = instance_id``; BlenderProc's segmentation reads it."""
    spec = SceneSpec.from_json_dict(scene["spec"])
    for obj in spec.objects:
        ob = add_object(obj, build_mesh)
        ob["category_id"] = int(obj.category_id or 0)
    support = add_support(spec)
    support["category_id"] = 0
    for i, light in enumerate(spec.lights):
        add_light(i, light)
    bproc.renderer.set_world_background(list(spec.world.color_rgb), strength=float(spec.world.strength))
    w, h = spec.render.width, spec.render.height
    cam = spec.camera
    bproc.camera.set_intrinsics_from_K_matrix(np.array(scene["K"]), w, h, cam.clip_start, cam.clip_end)
    bproc.camera.add_camera_pose(np.array(scene["cam_pose"]))
    bpy.context.scene.cycles.seed = cycles_seed(spec.seed, spec.frame_index)


def configure(settings: dict) -> None:
    """BlenderProc's render settings: samples, noise threshold (0 = off), denoiser, bounces, view
    transform (synthloop renders with ``Standard``; BlenderProc's default is ``Filmic``), light
    tree (BlenderProc turns it off by default) and caustics."""
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
    bproc.renderer.set_output_format(view_transform=settings.get("view_transform", "Standard"))
    bproc.renderer.toggle_light_tree(bool(settings.get("light_tree", False)))
    # BlenderProc has no call for caustics; Blender's default is on, synthloop's scenes have them off
    cyc = bpy.context.scene.cycles
    cyc.caustics_reflective = cyc.caustics_refractive = bool(settings.get("caustics", False))
    threads = int(settings.get("threads", 0))
    if threads > 0:
        bproc.renderer.set_cpu_threads(threads)
    bproc.renderer.enable_depth_output(activate_antialiasing=False)
    bproc.renderer.enable_segmentation_output(
        map_by=["instance", "category_id"], default_values={"category_id": 0}
    )


def main() -> None:
    scenes_file, out_dir, settings = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
    out_dir.mkdir(parents=True, exist_ok=True)
    scenes = json.loads(Path(scenes_file).read_text())
    bproc.init()
    configure(settings)
    seconds, cpu_seconds = [], []
    for i, scene in enumerate(scenes):
        t0, c0 = time.perf_counter(), time.process_time()
        bproc.clean_up()
        build(scene)
        data = bproc.renderer.render()
        bproc.writer.write_coco_annotations(
            str(out_dir / f"coco_{i:06d}"),
            instance_segmaps=data["instance_segmaps"],
            instance_attribute_maps=data["instance_attribute_maps"],
            colors=data["colors"],
            append_to_existing_output=False,
        )
        bproc.writer.write_hdf5(str(out_dir / f"depth_{i:06d}"), {"depth": data["depth"]})
        seconds.append(time.perf_counter() - t0)
        cpu_seconds.append(time.process_time() - c0)
        rgb = np.asarray(data["colors"][0], dtype=np.uint8)
        ids = np.asarray(data["instance_segmaps"][0])
        np.savez_compressed(out_dir / f"frame_{i:06d}.npz", rgb=rgb, ids=ids)
    meta = {
        "seconds_per_frame": seconds,
        "cpu_seconds_per_frame": cpu_seconds,
        "blender_version": bpy.app.version_string,
        "blenderproc_version": getattr(bproc, "__version__", None),
    }
    (out_dir / "timings.json").write_text(json.dumps(meta))


main()
sys.stdout.flush()
os._exit(0)  # the bpy module can crash while the interpreter tears it down; everything is written
