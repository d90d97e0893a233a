"""Sampler: determinism, independence of frames and subsystems, camera/light geometry, objects."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

from synthloop.errors import SynthloopError
from synthloop.geometry.transforms import quat_to_matrix
from synthloop.scenes.color import hsv_to_linear_rgb, kelvin_to_linear_rgb, srgb_to_linear
from synthloop.scenes.placement import footprint_radius
from synthloop.scenes.recipe import load_recipe, recipe_from_dict, recipe_hash, recipe_to_dict
from synthloop.scenes.sampler import orbit_rotation, sample_scene
from synthloop.scenes.spec import SceneSpec

SIGNS = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=float)


@pytest.fixture(scope="module")
def tabletop():
    return load_recipe("tabletop")


@pytest.fixture(scope="module")
def shapes():
    return load_recipe("shapes")


def test_same_triple_gives_equal_spec_and_json_round_trips(tabletop):
    a = sample_scene(tabletop, 7, 3)
    b = sample_scene(load_recipe("tabletop"), 7, 3)
    assert a == b and a.content_hash() == b.content_hash()
    assert SceneSpec.from_json_dict(a.to_json_dict()) == a
    assert a.recipe_hash == recipe_hash(tabletop) and a.recipe_name == "tabletop"
    assert (a.seed, a.frame_index) == (7, 3)
    assert sample_scene(tabletop, 8, 3) != a and sample_scene(tabletop, 7, 4) != a


def test_frames_do_not_depend_on_other_frames_or_order(shapes):
    forward = [sample_scene(shapes, 1, i) for i in range(6)]
    backward = [sample_scene(shapes, 1, i) for i in reversed(range(6))][::-1]
    assert forward == backward
    assert len({s.content_hash() for s in forward}) == 6


def _with_extra_distractor(recipe):
    data = recipe_to_dict(recipe)
    extra = copy.deepcopy(data["distractors"][0])
    extra["name"] = "extra_rock"
    extra["count"] = 3
    data["distractors"] = [*data["distractors"], extra]
    return recipe_from_dict(data)


def _roomy(recipe):
    data = recipe_to_dict(recipe)
    data["placement"]["area"] = [1.2, 1.2]
    return recipe_from_dict(data)


def test_adding_objects_does_not_change_camera_lights_or_other_objects(shapes):
    shapes = _roomy(shapes)  # nothing dropped, so every object of `shapes` is also in `more`
    more = _with_extra_distractor(shapes)
    for frame in range(4):
        a, b = sample_scene(shapes, 5, frame), sample_scene(more, 5, frame)
        assert a.camera == b.camera and a.lights == b.lights and a.support == b.support and a.world == b.world
        assert b.params["requested_count_extra_rock"] == 3
        a_objs = {o.name: o for o in a.objects}
        b_objs = {o.name: o for o in b.objects}
        assert a.params["dropped_count"] == b.params["dropped_count"] == 0
        assert a_objs.keys() <= b_objs.keys() and len(b_objs) == len(a_objs) + 3
        for name in a_objs:
            assert a_objs[name].shape == b_objs[name].shape and a_objs[name].material == b_objs[name].material


@pytest.mark.parametrize("azimuth", [0.0, 45.0, 200.0])
@pytest.mark.parametrize("elevation", [0.0, 30.0, 60.0, 89.9, 90.0])
@pytest.mark.parametrize("roll", [0.0, 20.0])
def test_orbit_rotation_is_a_proper_rotation_looking_back_along_the_orbit(elevation, azimuth, roll):
    rot = orbit_rotation(elevation, azimuth, roll)
    assert np.allclose(rot.T @ rot, np.eye(3), atol=1e-12) and abs(np.linalg.det(rot) - 1) < 1e-12
    e, a = math.radians(elevation), math.radians(azimuth)
    offset = np.array([math.cos(e) * math.cos(a), math.cos(e) * math.sin(a), math.sin(e)])
    assert np.allclose(-rot[:, 2], -offset, atol=1e-12)  # -Z looks from the camera to the target
    if roll == 0.0:
        assert abs(rot[2, 0]) < 1e-12  # image x axis horizontal
        if elevation < 90:
            assert rot[2, 1] > 0  # world up is image up
        else:  # straight down: image up points away from the azimuth
            assert np.allclose(rot[:, 1], [-math.cos(a), -math.sin(a), 0.0], atol=1e-12)
    # Continuity through the zenith: 89.9 and 90 differ only a little.
    assert np.allclose(orbit_rotation(89.9, azimuth, roll), orbit_rotation(90.0, azimuth, roll), atol=3e-3)


def test_roll_turns_the_image_about_the_view_axis():
    base, rolled = orbit_rotation(50, 30, 0), orbit_rotation(50, 30, 90)
    assert np.allclose(rolled[:, 2], base[:, 2])
    assert np.allclose(rolled[:, 0], base[:, 1]) and np.allclose(rolled[:, 1], -base[:, 0])


def test_sampled_camera_looks_at_its_look_at_point(tabletop):
    seen_elevation = []
    for frame in range(30):
        spec = sample_scene(tabletop, 3, frame)
        cam = spec.camera
        rot = np.array(cam.rotation_world_from_cam)
        to_target = np.array(cam.look_at) - np.array(cam.location)
        dist = np.linalg.norm(to_target)
        assert np.allclose(-rot[:, 2], to_target / dist, atol=1e-9)
        jitter = tabletop.camera.look_at_jitter.support().high
        assert abs(cam.look_at[2]) < 1e-12 and math.hypot(*cam.look_at[:2]) <= jitter + 1e-12
        # Pinhole: the look-at point projects to the image centre.
        p_cam = rot.T @ to_target
        assert abs(p_cam[0]) < 1e-9 and abs(p_cam[1]) < 1e-9 and p_cam[2] < 0
        p = spec.params
        assert p["camera_distance"] == pytest.approx(dist)
        d_sup, e_sup = tabletop.camera.distance.support(), tabletop.camera.elevation_deg.support()
        assert d_sup.low <= dist <= d_sup.high and e_sup.low <= p["camera_elevation_deg"] <= e_sup.high
        assert p["camera_height"] == pytest.approx(cam.location[2])
        # fov_deg -> focal length with the sensor width (horizontal fit).
        assert cam.focal_length_mm == pytest.approx(36.0 / (2 * math.tan(math.radians(p["fov_deg"]) / 2)))
        fov = tabletop.camera.fov_deg.support()
        assert fov.low <= p["fov_deg"] <= fov.high
        seen_elevation.append(p["camera_elevation_deg"])
    assert max(seen_elevation) - min(seen_elevation) > 15


def test_straight_down_camera(shapes):
    data = recipe_to_dict(shapes)
    data["camera"]["elevation_deg"] = 90
    spec = sample_scene(recipe_from_dict(data), 0, 0)
    rot = np.array(spec.camera.rotation_world_from_cam)
    assert np.allclose(rot[:, 2], [0, 0, 1], atol=1e-12)
    assert spec.camera.location[2] == pytest.approx(spec.params["camera_distance"])


def test_objects_rest_on_table_without_overlap(tabletop):
    pl = tabletop.placement
    total = 0
    for frame in range(25):
        spec = sample_scene(tabletop, 11, frame)
        objs = spec.objects
        total += len(objs)
        circles = []
        for o in objs:
            rot = quat_to_matrix(o.rotation_quat_wxyz)
            corners = (SIGNS * 0.5 * np.array(o.shape.dimensions)) @ rot.T + np.array(o.location)
            assert abs(corners[:, 2].min()) < 1e-12
            r = footprint_radius(o.shape.dimensions, o.rotation_quat_wxyz)
            assert abs(o.location[0]) <= pl.area[0] / 2 - r + 1e-12
            assert abs(o.location[1]) <= pl.area[1] / 2 - r + 1e-12
            circles.append((o.location[:2], r))
        for i in range(len(circles)):
            for j in range(i + 1, len(circles)):
                (p, ri), (q, rj) = circles[i], circles[j]
                assert math.dist(p, q) >= ri + rj + pl.min_gap - 1e-12
    assert total / 25 >= 5


def test_instance_ids_categories_keypoints_and_counts(tabletop):
    cats = None
    for frame in range(10):
        spec = sample_scene(tabletop, 2, frame)
        ids = [o.instance_id for o in spec.objects]
        assert ids == list(range(1, len(ids) + 1))
        labeled = [o.category_id is not None for o in spec.objects]
        assert labeled == sorted(labeled, reverse=True)  # labeled first, then distractors
        cats = {c.id: c for c in spec.categories}
        for o in spec.objects:
            cls_name = o.name.rsplit("_", 1)[0]
            if o.category_id is None:
                assert cls_name in ("foil_ingot", "foil_ball") and o.keypoints_local == {}
                continue
            cls = tabletop.classes[o.category_id - 1]
            assert cls.name == cls_name == cats[o.category_id].name
            assert tuple(o.keypoints_local) == cats[o.category_id].keypoints == tuple(cls.keypoints)
            for name, norm in cls.keypoints.items():
                assert np.allclose(
                    o.keypoints_local[name], np.array(norm) * 0.5 * np.array(o.shape.dimensions)
                )
        p = spec.params
        for cls in (*tabletop.classes, *tabletop.distractors):
            assert p[f"count_{cls.name}"] == sum(1 for o in spec.objects if o.name.startswith(cls.name + "_"))
            assert p[f"count_{cls.name}"] <= p[f"requested_count_{cls.name}"]
        assert p["object_count"] == sum(labeled) and p["distractor_count"] == len(labeled) - sum(labeled)
    assert [c.name for c in cats.values()] == ["date", "fig", "hazelnut"]
    assert cats[1].keypoints == ("tip_a", "tip_b") and cats[1].skeleton == ((1, 2),)
    assert cats[2].keypoints == ("stem", "bottom") and cats[3].keypoints == ("top",)


def test_crowded_area_drops_objects_and_records_realized_counts(shapes):
    data = recipe_to_dict(shapes)
    data["placement"]["area"] = [0.12, 0.12]
    data["classes"][0]["count"] = 6
    spec = sample_scene(recipe_from_dict(data), 0, 0)
    p = spec.params
    assert p["requested_count_sphere"] == 6 and p["dropped_count"] > 0
    assert p["count_sphere"] == sum(1 for o in spec.objects if o.category_id == 1) < 6


def test_dates_lie_with_their_long_axis_horizontal(tabletop):
    spec = sample_scene(tabletop, 0, 1)
    dates = [o for o in spec.objects if o.category_id == 1]
    assert dates
    for o in dates:
        long_axis_world = quat_to_matrix(o.rotation_quat_wxyz) @ np.array([0, 0, 1.0])
        assert abs(long_axis_world[2]) < 1e-12
        assert 0.035 * 0.85 <= o.shape.dimensions[2] <= 0.045 * 1.15


def test_lights_point_at_the_table_centre_with_temperature_colours(tabletop):
    spec = sample_scene(tabletop, 4, 0)
    assert len(spec.lights) >= 1 and spec.params["light_count"] == len(spec.lights)
    for light in spec.lights:
        loc, d = np.array(light.location), np.array(light.direction)
        assert np.allclose(d, -loc / np.linalg.norm(loc)) and abs(np.linalg.norm(d) - 1) < 1e-12
        assert max(light.color_rgb) == pytest.approx(1.0) and min(light.color_rgb) >= 0
        assert light.color_rgb == kelvin_to_linear_rgb(light.color_temperature_k)
    assert spec.params["key_light_strength"] == spec.lights[0].strength


def test_material_colours_are_linear_decodes_of_hsv(tabletop):
    spec = sample_scene(tabletop, 9, 2)
    for o in spec.objects:
        m = o.material
        assert m.base_color_rgb == hsv_to_linear_rgb(*m.base_color_hsv)
        assert o.params["hue"] == m.base_color_hsv[0] and o.params["roughness"] == m.roughness
        assert o.params["size"] == max(o.shape.dimensions)
    foil = [o for o in spec.objects if o.name.startswith("foil")] or [
        o for f in range(10) for o in sample_scene(tabletop, 9, f).objects if o.name.startswith("foil")
    ]
    assert foil and all(o.material.metallic == 1.0 and o.material.pattern == "foil" for o in foil)


def test_colour_conversions():
    assert np.allclose(srgb_to_linear([0.0, 0.5, 1.0]), [0.0, 0.21404114, 1.0])
    assert hsv_to_linear_rgb(0.0, 1.0, 1.0) == (1.0, 0.0, 0.0)
    assert hsv_to_linear_rgb(1.25, 0.0, 0.5) == hsv_to_linear_rgb(0.25, 0.0, 0.5)  # hue wraps
    warm, neutral, cool = kelvin_to_linear_rgb(2700), kelvin_to_linear_rgb(6500), kelvin_to_linear_rgb(12000)
    assert warm[0] == 1.0 and warm[0] > warm[1] > warm[2]
    assert cool[2] == 1.0 and cool[2] > cool[1] > cool[0]
    assert min(neutral) > 0.9  # near white


def test_scene_params_for_the_miner(tabletop):
    p = sample_scene(tabletop, 0, 0).params
    for key in (
        "camera_distance",
        "camera_height",
        "camera_elevation_deg",
        "camera_azimuth_deg",
        "focal_length_mm",
        "light_count",
        "key_light_strength",
        "key_light_elevation_deg",
        "light_color_temperature_k",
        "world_strength",
        "object_count",
        "distractor_count",
        "count_date",
        "count_fig",
        "count_hazelnut",
        "support_pattern",
    ):
        assert key in p, key
    assert p["support_pattern"] in ("none", "noise", "wood", "marble")


def test_bad_seed_is_rejected(shapes):
    with pytest.raises(SynthloopError, match="seed"):
        sample_scene(shapes, -1, 0)
    with pytest.raises(SynthloopError, match="frame_index"):
        sample_scene(shapes, 0, -2)


def test_texture_and_mesh_files_are_chosen_from_their_lists(tmp_path, shapes):
    tex = tmp_path / "tex"
    tex.mkdir()
    for name in ("a.png", "b.jpg", "c.png"):
        (tex / name).write_bytes(b"not decoded here")
    (tex / "readme.txt").write_text("ignored")
    meshes = []
    for name in ("m1.obj", "m2.ply"):
        (tmp_path / name).write_text("v 0 0 0\n")
        meshes.append(str(tmp_path / name))
    data = recipe_to_dict(shapes)
    data["classes"][0]["count"] = 4
    data["classes"][0]["shape"] = {"kind": "mesh", "dimensions": [0.04, 0.04, 0.04], "mesh_files": meshes}
    data["classes"][0]["material"]["texture_folder"] = str(tex)
    data["placement"]["area"] = [1.0, 1.0]
    rec = recipe_from_dict(data)
    textures, mesh_paths = set(), set()
    for frame in range(6):
        spec = sample_scene(rec, 0, frame)
        assert spec == sample_scene(rec, 0, frame)
        for o in (o for o in spec.objects if o.category_id == 1):
            assert o.shape.kind == "mesh" and o.shape.mesh_path in meshes
            assert o.material.image_path is not None and o.params["texture"] in ("a.png", "b.jpg", "c.png")
            textures.add(o.material.image_path)
            mesh_paths.add(o.shape.mesh_path)
    assert textures == {str(tex / n) for n in ("a.png", "b.jpg", "c.png")}
    assert mesh_paths == set(meshes)


def test_a_cap_is_sampled_only_where_asked_and_leaves_other_scenes_as_they_were(tabletop):
    """Without ``cap_fraction`` a recipe's scenes (and dumps) are what they were; with it, the
    hazelnuts get a paler, less saturated cap of the asked size, roughness and rim."""
    d = recipe_to_dict(tabletop)
    assert all("cap_fraction" not in c["material"] for c in d["classes"])
    nut = next(c for c in d["classes"] if c["name"] == "hazelnut")
    nut["material"].update(
        cap_fraction={"uniform": [0.2, 0.3]},
        cap_saturation_scale=0.5,
        cap_value_scale=1.5,
        cap_roughness=0.85,
        cap_rim=0.7,
    )
    capped = recipe_from_dict(d)
    nuts = [o for f in range(6) for o in sample_scene(capped, 3, f).objects if o.name.startswith("hazelnut")]
    assert nuts
    for o in nuts:
        m = o.material
        h, s, v = m.base_color_hsv
        assert 0.2 <= m.cap_fraction <= 0.3 and o.params["cap_fraction"] == m.cap_fraction
        assert m.cap_rgb == hsv_to_linear_rgb(h, s * 0.5, min(1.0, v * 1.5))
        assert (m.cap_roughness, m.cap_rim) == (0.85, 0.7)
    others = [o for f in range(6) for o in sample_scene(tabletop, 3, f).objects]
    assert all(o.material.cap_fraction == 0 and "cap_fraction" not in o.params for o in others)
    assert all("cap" not in str(o.material.model_dump()) for o in others)


@pytest.mark.parametrize(
    ("field", "value"), [("cap_fraction", 1.5), ("cap_rim", -0.1), ("cap_roughness", {"uniform": [0.5, 2]})]
)
def test_a_cap_out_of_range_names_its_field(tabletop, field, value):
    d = recipe_to_dict(tabletop)
    d["classes"][0]["material"][field] = value
    with pytest.raises(SynthloopError, match=rf"classes\[0\]\.material\.{field}: .*\[0, 1\]"):
        recipe_from_dict(d)
