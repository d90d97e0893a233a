"""People: the body model behind synthloop.bodies, the pose prior's validation, person keypoints
(visibility from the instance map and depth, self-occlusion included), people turned towards the
camera, the left/right flip map, and OKS AP = 1.0 on own ground truth.

The body model needs the ``people`` extra (anny); tests that pose bodies skip without it. The one
Blender test renders a single 128x96 frame at 4 samples.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import yaml

from synthloop.bodies.coco import COCO17_KEYPOINTS, flip_index
from synthloop.errors import RecipeError
from synthloop.geometry.annotate import BODY_KP_SLACK_M
from synthloop.scenes.recipe import recipe_from_dict
from synthloop.scenes.registry import bundled_path

needs_anny = pytest.mark.skipif(
    importlib.util.find_spec("anny") is None, reason="the body model needs the 'people' extra (anny)"
)


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    torch.set_num_threads(1)


def _people_dict() -> dict:
    return yaml.safe_load(bundled_path("people").read_text())


def _body(d: dict) -> dict:
    return d["classes"][0]["shape"]["body"]


def _tiny_occluding(d: dict, w: int = 128, h: int = 96) -> dict:
    """Three people close together, seen from low and far enough that they overlap."""
    d["resolution"] = [w, h]
    d["render"]["samples"] = 4
    d["classes"][0]["count"] = 3
    d["distractors"] = []
    d["placement"]["area"] = [2.4, 1.6]
    d["camera"].update(distance=7.0, elevation_deg=10, fov_deg=40, look_at_jitter=0, look_at_height=0.9)
    return d


# ------------------------------------------------------------------ bad input: one line, file + field
@pytest.mark.parametrize(
    ("edit", "field", "words"),
    [
        (
            lambda b: b["poses"]["sitting"]["joints"].update({"lowerleg01.L": [160, 0, 0]}),
            "poses.sitting.joints.lowerleg01.L",
            "anatomical",
        ),
        (
            lambda b: b["noise_deg"].update({"upperleg01.L": [60, 0, 0]}),
            "noise_deg.upperleg01.L",
            "[-60, 60] deg is outside",
        ),
        (lambda b: b["phenotype"].update({"tail_length": 0.5}), "phenotype", "unknown phenotype"),
        (lambda b: b.update(keypoint_set="halpe26"), "keypoint_set", "coco17"),
        (lambda b: b["poses"]["standing"]["joints"].update({"tail": [0, 0, 0]}), "body", "unknown joint"),
        (lambda b: b["head"].update(hair_style="mohawk"), "head.hair_style", "none, short, long"),
        (lambda b: b["head"]["hair"].update(value={"uniform": [0.2, 1.4]}), "head.hair.value", "[0, 1]"),
        (lambda b: b["head"].update(beard={"value": 0.1}), "head", "unknown key 'beard'"),
    ],
)
def test_bad_body_config_is_one_line_naming_file_and_field(edit, field, words, tmp_path):
    """Through ``recipe_from_dict`` and through the CLI (``generate --recipe bad.yaml``: exit 2,
    one stderr line naming the file and the field, no dataset folder)."""
    from typer.testing import CliRunner

    from synthloop.cli import app

    d = _people_dict()
    edit(_body(d))
    with pytest.raises(RecipeError) as e:
        recipe_from_dict(d, source="people.yaml")
    msg = str(e.value)
    assert msg.startswith("people.yaml: classes[0].shape.body")
    assert field in msg.splitlines()[0] and words in msg
    assert len(msg.splitlines()) == 1
    bad, out = tmp_path / "bad.yaml", tmp_path / "out"
    bad.write_text(yaml.safe_dump(d, sort_keys=False))
    r = CliRunner().invoke(app, ["generate", "--recipe", str(bad), "--frames", "1", "--out", str(out)])
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in r.output
    assert lines[0].startswith(f"{bad}: classes[0].shape.body") and words in lines[0]
    assert not out.exists()


@pytest.mark.parametrize(
    ("edit", "field", "words"),
    [
        (lambda c: c["clothing"].update(sleeves="elbow"), "clothing.sleeves", "none, short, long"),
        (lambda c: c["clothing"].update(legs={"choice": ["long", "capri"]}), "clothing.legs", "short, long"),
        (lambda c: c["clothing"]["bottom"].update(value=1.5), "clothing.bottom.value", "[0, 1]"),
        (lambda c: c["clothing"].update(hat={"value": 0.5}), "clothing", "unknown key 'hat'"),
    ],
)
def test_bad_clothing_is_one_line_naming_file_and_field(edit, field, words):
    d = _people_dict()
    edit(d["classes"][0])
    with pytest.raises(RecipeError) as e:
        recipe_from_dict(d, source="people.yaml")
    msg = str(e.value)
    assert (
        len(msg.splitlines()) == 1 and msg.startswith(f"people.yaml: classes[0].{field}") and words in msg
    ), msg


def test_clothing_on_a_class_that_is_not_a_body_is_refused():
    d = yaml.safe_load(bundled_path("tabletop").read_text())
    d["classes"][0]["clothing"] = {"sleeves": "long", "legs": "long"}
    with pytest.raises(RecipeError, match=r"tabletop.yaml: classes\[0\].*only a body class"):
        recipe_from_dict(d, source="tabletop.yaml")


def test_keypoints_asked_of_a_body_class_are_refused_through_the_cli(tmp_path):
    """A person class that asks for its own keypoint set (not the body model's COCO-17)."""
    from typer.testing import CliRunner

    from synthloop.cli import app

    d = _people_dict()
    d["classes"][0]["keypoints"] = {"head": [0, 0, 1], "tail": [0, 0, -1]}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(d, sort_keys=False))
    r = CliRunner().invoke(
        app, ["generate", "--recipe", str(bad), "--frames", "1", "--out", str(tmp_path / "o")]
    )
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"{bad}: classes[0]") and "COCO-17" in lines[0]
    assert not (tmp_path / "o").exists()


def test_body_limits_accept_the_bundled_recipe():
    recipe = recipe_from_dict(_people_dict(), source="people.yaml")
    assert recipe.classes[0].shape.kind == "body"


# ------------------------------------------------------------------ flip map
def test_left_right_flip_swaps_keypoint_labels():
    idx = flip_index(COCO17_KEYPOINTS)
    assert idx[0] == 0  # nose stays
    for i, name in enumerate(COCO17_KEYPOINTS):
        j = idx[i]
        assert idx[j] == i  # an involution
        if name.startswith("left_"):
            assert COCO17_KEYPOINTS[j] == "right_" + name[5:]
    # an image flip maps u -> W - u and swaps the labels: the flipped left wrist sits where the
    # mirrored right wrist was
    w = 100.0
    kps = np.array([[10.0 + i, 20.0, 2] for i in range(17)])
    flipped = kps[idx].copy()
    flipped[:, 0] = w - flipped[:, 0]
    lw, rw = COCO17_KEYPOINTS.index("left_wrist"), COCO17_KEYPOINTS.index("right_wrist")
    assert flipped[lw, 0] == w - kps[rw, 0]


# ------------------------------------------------------------------ body model
@needs_anny
def test_body_model_poses_and_keeps_keypoints_in_the_mesh_frame():
    from synthloop.bodies.model import BODY_FORWARD_XY, pose_body

    rest = pose_body({}, {})
    assert rest.keypoints.shape == (17, 3) and rest.faces.shape[1] == 3
    lo, hi = rest.vertices.min(0), rest.vertices.max(0)
    assert np.allclose(lo + hi, 0.0) and 1.4 < hi[2] - lo[2] < 2.1  # bbox-centred, human height
    assert np.all((rest.keypoints > lo) & (rest.keypoints < hi))
    k = {n: rest.keypoints[i] for i, n in enumerate(COCO17_KEYPOINTS)}
    assert k["left_shoulder"][0] > 0 > k["right_shoulder"][0]  # +X is the person's left
    assert k["nose"][1] < k["left_hip"][1]  # facing -Y
    ears = (k["left_ear"] + k["right_ear"]) / 2
    assert np.dot(k["nose"][:2] - ears[:2], BODY_FORWARD_XY) > 0.05  # the facing prior's forward
    sit = pose_body({}, {"upperleg01.L": (-85, 0, 0), "lowerleg01.L": (85, 0, 0)})
    s = {n: sit.keypoints[i] for i, n in enumerate(COCO17_KEYPOINTS)}
    thigh = s["left_knee"] - s["left_hip"]
    assert abs(thigh[2]) < 0.3 * np.linalg.norm(thigh) and thigh[1] < 0  # thigh horizontal, forward
    with pytest.raises(ValueError, match="coco17"):
        pose_body({}, {}, keypoint_set="halpe26")


@needs_anny
def test_a_body_is_posed_once_per_process_whatever_the_order_of_its_parameters():
    """Sampling, annotation and the renderer pose a person through one cache; the model's output
    does not depend on the order of phenotype or joints, so the cache key is the sorted form."""
    from synthloop.bodies.model import clear_pose_cache, pose_body

    clear_pose_cache()
    pheno = {"weight": 0.7, "age": 0.4, "gender": 0.2}
    rot = {"upperleg01.L": (-20.0, 1.0, 0.5), "spine03": (5.0, 0.0, -2.0)}
    a = pose_body(pheno, rot)
    b = pose_body(dict(sorted(pheno.items())), dict(sorted(rot.items())))
    assert a is b and not a.vertices.flags.writeable and not a.keypoints.flags.writeable
    clear_pose_cache()
    c = pose_body(dict(sorted(pheno.items())), dict(sorted(rot.items())))
    assert c is not a and np.array_equal(c.vertices, a.vertices) and np.array_equal(c.keypoints, a.keypoints)
    assert not np.array_equal(pose_body({**pheno, "age": 0.41}, rot).vertices, a.vertices)


@needs_anny
def test_renderer_hands_the_worker_the_annotated_body_meshes(tmp_path):
    """The Blender worker gets each person's mesh from the parent (no posing there): after the
    request's JSON round trip, its mesh builder returns exactly the mesh annotation uses, and
    builds the other shapes itself."""
    from synthloop.generators.blender_renderer import BlenderRenderer
    from synthloop.generators.blender_worker import given_meshes_builder
    from synthloop.geometry.meshes import build_mesh, mesh_cache
    from synthloop.scenes.sampler import sample_scene
    from synthloop.scenes.spec import SceneSpec

    d = _people_dict()
    d["classes"][0]["count"] = 2
    d["distractors"] = d["distractors"][:1]
    d["distractors"][0]["count"] = 1
    spec = sample_scene(recipe_from_dict(d, source="people.yaml"), 0, 0)
    kinds = [o.shape.kind for o in spec.objects]
    assert "body" in kinds and set(kinds) - {"body"}
    renderer = BlenderRenderer()
    try:
        files = renderer._write_meshes(spec)
        assert sorted(map(int, files)) == [k for k, o in enumerate(spec.objects) if o.shape.kind == "body"]
        worker_spec = SceneSpec.from_json_dict(spec.to_json_dict())
        build = given_meshes_builder(worker_spec, files)
        for obj, wobj in zip(spec.objects, worker_spec.objects, strict=True):
            want, got = mesh_cache(obj.shape), build(wobj.shape)
            assert np.array_equal(got.vertices, want.vertices) and np.array_equal(got.faces, want.faces)
            assert got.closed == want.closed
            if obj.shape.kind == "body":
                assert np.array_equal(got.face_groups, want.face_groups)
            else:
                assert got is not want and np.array_equal(got.vertices, build_mesh(obj.shape).vertices)
    finally:
        renderer.close()


@needs_anny
def test_sampled_people_are_deterministic_and_labeled_coco17():
    from synthloop.scenes.sampler import sample_scene

    recipe = recipe_from_dict(_people_dict(), source="people.yaml")
    a, b = sample_scene(recipe, 3, 1), sample_scene(recipe, 3, 1)
    assert a.content_hash() == b.content_hash()
    assert a.categories[0].keypoints == COCO17_KEYPOINTS and len(a.categories[0].skeleton) == 19
    persons = [o for o in a.objects if o.category_id == 1]
    assert len(persons) >= 1
    for p in persons:
        assert p.shape.kind == "body" and set(p.keypoints_local) == set(COCO17_KEYPOINTS)
        assert p.params["pose"] in _body(_people_dict())["poses"]
        # the outfit's slots 1-3 and the head's 4-5; the class material is the top
        skin, bottom, shoes, hair, eyes = p.extra_materials
        assert 0.02 <= skin.base_color_hsv[0] <= 0.09
        assert p.params["sleeves"] == p.shape.body.sleeves and p.params["legs"] == p.shape.body.legs
        assert p.params["bottom_value"] == bottom.base_color_hsv[2] and shoes.base_color_hsv[1] <= 0.3
        assert (
            p.params["hair_style"] == p.shape.body.hair and p.params["hair_value"] == hair.base_color_hsv[2]
        )
        assert hair.base_color_hsv[2] <= 0.45 and eyes.base_color_hsv[2] <= 0.12
    from synthloop.geometry.meshes import build_mesh

    styles = {p.shape.body.hair: p for p in persons}
    for style, p in styles.items():
        groups = build_mesh(p.shape).face_groups
        assert groups is not None
        assert set(np.unique(groups)) == {0, 1, 2, 3, 5} | ({4} if style != "none" else set())


@needs_anny
def test_without_clothing_a_person_wears_one_garment_and_samples_as_before_outfits():
    """A recipe without ``clothing`` draws nothing for it: its scenes hold no outfit fields (so their
    hashes are those of the recipe before outfits existed), one skin material and two face groups."""
    from synthloop.geometry.meshes import build_mesh
    from synthloop.scenes.sampler import sample_scene

    d = _people_dict()
    del d["classes"][0]["clothing"]
    del _body(d)["head"]
    spec = sample_scene(recipe_from_dict(d, source="people.yaml"), 3, 1)
    persons = [o for o in spec.objects if o.category_id == 1]
    assert persons and all(len(p.extra_materials) == 1 for p in persons)
    dumped = spec.to_json_dict()
    bodies = [o["shape"]["body"] for o in dumped["objects"] if o["shape"].get("body")]
    assert all("sleeves" not in b and "hair" not in b for b in bodies)
    assert set(np.unique(build_mesh(persons[0].shape).face_groups)) == {0, 1}


@needs_anny
def test_a_head_adds_hair_and_eyes_and_leaves_every_other_draw_alone():
    """``body.head`` is drawn after everything else of a person: the same recipe with and without
    it places, poses, dresses and turns the same people; only the hair and eyes are new. Without
    an outfit, slots 2 and 3 repeat the top (no face uses them) so the hair and eyes keep 4 and 5."""
    from synthloop.geometry.meshes import build_mesh
    from synthloop.scenes.sampler import sample_scene

    d = _people_dict()
    del d["classes"][0]["clothing"]
    with_head = sample_scene(recipe_from_dict(d, source="people.yaml"), 3, 1)
    del _body(d)["head"]
    without = sample_scene(recipe_from_dict(d, source="people.yaml"), 3, 1)
    assert len(with_head.objects) == len(without.objects)
    for a, b in zip(with_head.objects, without.objects, strict=True):
        assert a.location == b.location and a.rotation_quat_wxyz == b.rotation_quat_wxyz
        if a.category_id != 1:
            continue
        assert a.shape.body.rotations_deg == b.shape.body.rotations_deg
        assert a.extra_materials[:1] == b.extra_materials and a.extra_materials[1:3] == (a.material,) * 2
        groups = build_mesh(a.shape).face_groups
        assert 5 in groups and (4 in groups) == (a.shape.body.hair != "none")
        assert not np.isin(groups, [2, 3]).any()


@needs_anny
@pytest.mark.parametrize(("sleeves", "legs"), [("none", "short"), ("short", "long"), ("long", "long")])
def test_an_outfit_paints_the_regions_its_sleeves_and_legs_cover(sleeves, legs):
    """Faces of the arms below the sleeves and of the legs below the trouser legs take the skin
    (slot 1); the feet the shoes (3); the torso the top (0); the hips the bottom (2)."""
    from synthloop.bodies.model import pose_body
    from synthloop.bodies.outfit import BOTTOM, EYES, HAIR, REGIONS, SHOES, SKIN, TOP
    from synthloop.geometry.meshes import build_mesh
    from synthloop.scenes.sampler import sample_scene

    d = _people_dict()
    d["classes"][0]["clothing"].update(sleeves=sleeves, legs=legs)
    spec = sample_scene(recipe_from_dict(d, source="people.yaml"), 0, 2)
    person = next(o for o in spec.objects if o.category_id == 1)
    body = person.shape.body
    regions = pose_body(dict(body.phenotype), dict(body.rotations_deg)).face_regions
    slots = build_mesh(person.shape).face_groups
    by_region = {name: set(np.unique(slots[regions == r])) for r, name in enumerate(REGIONS)}
    assert by_region["torso"] == {TOP} and by_region["hips"] == {BOTTOM} and by_region["foot"] == {SHOES}
    assert by_region["head_hands"] == {SKIN} and by_region["thigh"] == {BOTTOM}
    assert by_region["eyes"] == {EYES} and by_region["scalp"] == {SKIN if body.hair == "none" else HAIR}
    assert by_region["upper_arm"] == {SKIN if sleeves == "none" else TOP}
    assert by_region["forearm"] == {TOP if sleeves == "long" else SKIN}
    assert by_region["shin"] == {BOTTOM if legs == "long" else SKIN}


def _dataset_of(spec, ann):
    from synthloop.dataset.types import Category, Dataset, Frame

    cats = [Category(c.id, c.name, keypoints=c.keypoints, skeleton=c.skeleton) for c in spec.categories]
    frame = Frame(
        "000000", Path("/nonexistent.png"), spec.render.width, spec.render.height, list(ann.objects)
    )
    return Dataset(categories=cats, frames=[frame])


@needs_anny
def test_oks_ap_is_one_against_own_ground_truth():
    from synthloop.evaluation.bootstrap import bootstrap_coco
    from synthloop.evaluation.coco_metrics import coco_evaluate
    from synthloop.evaluation.detections import FrameDetections
    from synthloop.geometry.annotate import annotate_frame, zbuffer_scene
    from synthloop.scenes.sampler import sample_scene

    recipe = recipe_from_dict(_tiny_occluding(_people_dict(), 160, 120), source="people.yaml")
    spec = sample_scene(recipe, 0, 0)
    ids, depth = zbuffer_scene(spec, include_support=True)
    ds = _dataset_of(spec, annotate_frame(spec, ids, depth))
    objs = [o for o in ds.frames[0].objects if o.num_keypoints > 0]
    assert objs
    dets = {
        "000000": FrameDetections(
            "000000",
            [o.bbox for o in objs],
            np.linspace(0.9, 0.5, len(objs)),
            [1] * len(objs),
            keypoints=np.array([o.keypoints for o in objs], dtype=np.float32),
        )
    }
    out = coco_evaluate(ds, dets, iou_types=("keypoints",))
    assert out["keypoints"]["stats"]["AP"] == pytest.approx(1.0)
    boot = bootstrap_coco(ds, {"gt": dets}, resamples=10, iou_type="keypoints")
    assert boot["runs"]["gt"]["AP"]["value"] == pytest.approx(1.0)
    # and it can fail: shifting every keypoint by 15 px drops AP
    shifted = dets["000000"].keypoints.copy()
    shifted[:, :, 0] += 15
    dets["000000"] = FrameDetections(
        "000000", dets["000000"].boxes, dets["000000"].scores, [1] * len(objs), keypoints=shifted
    )
    assert coco_evaluate(ds, dets, iou_types=("keypoints",))["keypoints"]["stats"]["AP"] < 0.9


def _one_person(facing: float | None) -> dict:
    """One person 4 m from a level camera, no distractors; ``facing_deg`` constant or absent."""
    d = _people_dict()
    d["resolution"] = [320, 240]
    d["classes"][0]["count"] = 1
    d["distractors"] = []
    d["camera"].update(distance=4.0, elevation_deg=10, fov_deg=40, look_at_jitter=0, look_at_height=0.9)
    _body(d).pop("facing_deg", None)
    if facing is not None:
        _body(d)["facing_deg"] = facing
    return d


@needs_anny
def test_facing_turns_people_to_the_camera_and_their_own_head_hides_the_face_from_behind():
    from synthloop.gap.pose import pose_statistics
    from synthloop.geometry.annotate import annotate_frame, zbuffer_scene
    from synthloop.scenes.sampler import sample_scene

    face = [COCO17_KEYPOINTS.index(n) for n in ("nose", "left_eye", "right_eye")]
    torso = [COCO17_KEYPOINTS.index(n) for n in ("left_shoulder", "right_shoulder", "left_hip", "right_hip")]
    for facing, face_vis, faces_camera in ((0.0, 2, 1.0), (180.0, 1, 0.0)):
        recipe = recipe_from_dict(_one_person(facing), source="people.yaml")
        for k in range(3):
            spec = sample_scene(recipe, 0, k)
            obj = spec.objects[0]
            assert obj.params["facing_deg"] == facing
            ids, depth = zbuffer_scene(spec, include_support=True)
            kp = np.array(annotate_frame(spec, ids, depth).objects[0].keypoints)
            assert (kp[face, 2] == face_vis).all(), (facing, k, kp[:, 2])
            assert (kp[torso, 2] > 0).all()  # shoulders and hips stay labelled from either side
            assert pose_statistics(kp)["faces_camera"] == [faces_camera]


@needs_anny
def test_facing_changes_only_the_people_s_yaw():
    from synthloop.scenes.sampler import sample_scene

    free = recipe_from_dict(_one_person(None), source="people.yaml")
    turned = recipe_from_dict(_one_person(45.0), source="people.yaml")
    for k in range(3):
        a, b = sample_scene(free, 3, k), sample_scene(turned, 3, k)
        assert a.camera == b.camera and len(a.objects) == len(b.objects) == 1
        oa, ob = a.objects[0], b.objects[0]
        assert (oa.location, oa.shape, oa.material) == (ob.location, ob.shape, ob.material)
        assert oa.rotation_quat_wxyz != ob.rotation_quat_wxyz
        assert {k: v for k, v in ob.params.items() if k not in ("yaw_deg", "facing_deg")} == {
            k: v for k, v in oa.params.items() if k != "yaw_deg"
        }


# ------------------------------------------------------------------ one tiny Blender frame
def _frame_with_mutual_occlusion(recipe):
    """The first frame (seed 0) whose z-buffer shows a person's joint covered by another person."""
    from synthloop.geometry.annotate import annotate_frame, zbuffer_scene
    from synthloop.scenes.sampler import sample_scene

    for k in range(30):
        spec = sample_scene(recipe, 0, k)
        ids, depth = zbuffer_scene(spec, include_support=True)
        for obj in annotate_frame(spec, ids, depth).objects:
            for u, v, vis in obj.keypoints:
                if vis == 1 and int(ids[int(v), int(u)]) not in (0, obj.instance_id):
                    return spec
    raise AssertionError("no frame with mutual occlusion in 30 frames")


def _camera_depths(spec, instance_id: int) -> np.ndarray:
    """(17,) camera depth (metres, OpenCV +Z) of a person's COCO-17 keypoints."""
    from synthloop.geometry.camera import world_to_cam_cv
    from synthloop.geometry.transforms import object_to_world, transform_points

    obj = next(o for o in spec.objects if o.instance_id == instance_id)
    T = world_to_cam_cv(spec.camera) @ object_to_world(obj.location, obj.rotation_quat_wxyz)
    return transform_points(T, np.array([obj.keypoints_local[n] for n in COCO17_KEYPOINTS]))[:, 2]


@needs_anny
@pytest.mark.blender
def test_rendered_person_keypoints_inside_mask_when_visible_and_hidden_when_occluded():
    from synthloop.generators.blender_renderer import BlenderRenderer
    from synthloop.geometry.annotate import annotate_frame

    recipe = recipe_from_dict(_tiny_occluding(_people_dict()), source="people.yaml")
    spec = _frame_with_mutual_occlusion(recipe)
    with BlenderRenderer(threads=1, restart_every=None, frame_timeout_s=300) as r:
        frame = r.render(spec)
    ann = annotate_frame(spec, frame.instance_ids, frame.depth)
    ids = frame.instance_ids
    counts = {0: 0, 1: 0, 2: 0}
    by_other = 0
    for obj in ann.objects:
        z = _camera_depths(spec, obj.instance_id)
        for (u, v, vis), zk in zip(obj.keypoints, z, strict=True):
            counts[vis] += 1
            if vis == 0:
                continue
            pix = int(ids[int(v), int(u)])
            if vis == 2:
                assert pix == obj.instance_id  # inside its own mask
            elif pix == obj.instance_id:  # hidden by the person's own body, well in front of it
                assert frame.depth[int(v), int(u)] < zk - BODY_KP_SLACK_M
            else:
                by_other += pix > 0
    assert counts[2] > 0 and counts[1] > 0, counts
    assert by_other > 0  # occluded joints are hidden by another person in this scene


@pytest.mark.parametrize("flips", [("hflip_prob",), ("vflip_prob",), ("hflip_prob", "vflip_prob")])
def test_training_flip_of_an_image_swaps_left_and_right_keypoint_labels(tmp_path, flips):
    from PIL import Image

    from synthloop.dataset.types import Category, Dataset, Frame, ObjectAnnotation
    from synthloop.training.data import AugmentConfig, DetectionDataset

    w, h = 40, 30
    Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(tmp_path / "a.png")
    kps = tuple((5.5 + i, 4.5 + i, 2) for i in range(17))
    obj = ObjectAnnotation(1, (2.0, 2.0, 30.0, 28.0), 100.0, keypoints=kps)
    ds = Dataset(
        [Category(1, "person", keypoints=COCO17_KEYPOINTS)], [Frame("a", tmp_path / "a.png", w, h, [obj])]
    )
    aug = AugmentConfig(enabled=True, **{"hflip_prob": 0.0, **{f: 1.0 for f in flips}})
    _, target = DetectionDataset(ds, aug, with_masks=False)[0]
    got = target["keypoints"][0].numpy()
    lw, rw = COCO17_KEYPOINTS.index("left_wrist"), COCO17_KEYPOINTS.index("right_wrist")
    hflip, vflip = "hflip_prob" in flips, "vflip_prob" in flips
    mirrored = hflip != vflip
    src = rw if mirrored else lw  # the joint now labeled left_wrist
    exp_u = w - kps[src][0] if hflip else kps[src][0]
    exp_v = h - kps[src][1] if vflip else kps[src][1]
    assert got[lw, 0] == pytest.approx(exp_u) and got[lw, 1] == pytest.approx(exp_v)
    assert got[0, 0] == pytest.approx(w - kps[0][0] if hflip else kps[0][0])  # the nose keeps its label


def test_predicted_skeletons_are_drawn():
    from synthloop.evaluation.detections import FrameDetections
    from synthloop.overlays import detection_keypoints, draw_detections

    kps = np.zeros((1, 17, 3), np.float32)
    kps[0, :, 0] = np.linspace(40, 120, 17)
    kps[0, :, 1] = np.linspace(30, 90, 17)
    with_kp = FrameDetections("a", [[20.0, 20.0, 140.0, 100.0]], [0.9], [1], keypoints=kps)
    without = FrameDetections("a", [[20.0, 20.0, 140.0, 100.0]], [0.9], [1])
    pts, skel = detection_keypoints(with_kp, 0)
    assert len(pts) == 17 and len(skel) == 19  # COCO's skeleton for 17 keypoints
    black = np.zeros((120, 160, 3), np.uint8)
    a = np.asarray(draw_detections(black, with_kp)).astype(int)
    b = np.asarray(draw_detections(black, without)).astype(int)
    u, v = int(kps[0, 8, 0]), int(kps[0, 8, 1])
    assert np.abs(a[v - 1 : v + 2, u - 1 : u + 2] - b[v - 1 : v + 2, u - 1 : u + 2]).sum() > 0
