"""Hostile input and OS faults: a corpus of small bad files, generated here, fed to every command
that reads user files, and a full disk / read-only folder under the commands that write. Each
must end in exit 2 (bad input) or 1 (OS error) with one stderr line that names the file and the
field (or the path and errno), no traceback, and no output folder left (or the old one unchanged).

Commands run in-process through typer's CliRunner (milliseconds each); a few real subprocess
calls check the same from the outside.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from synthloop.cli import app

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
W, H = 16, 12


def invoke(*args: str | Path):
    return CliRunner().invoke(app, [str(a) for a in args])


def assert_clean_error(r, codes: tuple[int, ...] = (2,), names: tuple[str, ...] = ()) -> str:
    """Exit in ``codes``, one stderr line per problem (a single problem here, except where a
    validator lists several at once, each on its own line) containing every string of ``names``,
    no traceback anywhere; returns the first line."""
    out = (r.stdout or "") + (r.stderr or "")
    assert r.exit_code in codes, f"exit {r.exit_code}: {out[-2000:]!r} {r.exception!r}"
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert "Traceback" not in out
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 or (len(lines) <= 20 and len({ln.split(": ")[0] for ln in lines}) == 1), lines
    for n in names:
        assert any(n in ln for ln in lines), (n, lines)
    return lines[0]


# ---------------------------------------------------------------- a small valid COCO dataset
def _coco_dict() -> dict:
    return {
        "images": [
            {"id": 1, "file_name": "a.png", "width": W, "height": H},
            {"id": 2, "file_name": "b.png", "width": W, "height": H},
        ],
        "categories": [{"id": 1, "name": "date"}, {"id": 2, "name": "fig"}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "bbox": [2, 2, 6, 5],
                "segmentation": [[2, 2, 8, 2, 8, 7, 2, 7]],
                "area": 30,
                "iscrowd": 0,
            },
            {"id": 2, "image_id": 2, "category_id": 2, "bbox": [1, 1, 4, 4], "area": 16, "iscrowd": 0},
        ],
    }


def _write_images(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(folder / name)


@pytest.fixture
def coco_dir(tmp_path: Path) -> Path:
    d = tmp_path / "src"
    _write_images(d)
    (d / "annotations.json").write_text(json.dumps(_coco_dict()))
    return d


def _ann(d: dict, **kw) -> dict:
    d["annotations"][0].update(kw)
    return d


def _secret(tmp_path: Path) -> Path:
    s = tmp_path / "secret" / "id_rsa.png"
    s.parent.mkdir(exist_ok=True)
    Image.new("RGB", (W, H), (255, 0, 0)).save(s)
    return s


# (name, mutate(dict, tmp_path) -> dict | str, expected exit codes, strings the line must name)
Mutation = Callable[[dict, Path], "dict | str | bytes"]
COCO_CORPUS: list[tuple[str, Mutation, tuple[str, ...]]] = [
    (
        "traversal",
        lambda d, t: (_secret(t), d["images"][0].update(file_name="../secret/id_rsa.png"), d)[-1],
        ("file_name", "images[0]"),
    ),
    (
        "absolute",
        lambda d, t: (d["images"][0].update(file_name=str(_secret(t))), d)[-1],
        ("file_name",),
    ),
    (
        "symlink_out",
        lambda d, t: (
            os.symlink(_secret(t), t / "src" / "link.png"),
            d["images"][0].update(file_name="link.png"),
            d,
        )[-1],
        ("file_name",),
    ),
    (
        "poly_nan",
        lambda d, t: json.dumps(_ann(d, segmentation=[[2, 2, 8, 2, 8, 7, 2, 7]])).replace(
            "[2, 2, 8", "[NaN, 2, 8", 1
        ),
        ("segmentation",),
    ),
    (
        "poly_inf",
        lambda d, t: json.dumps(_ann(d, segmentation=[[2, 2, 8, 2, 8, 7, 2, 7]])).replace(
            "[2, 2, 8", "[1e400, 2, 8", 1
        ),
        ("segmentation",),
    ),
    ("poly_huge", lambda d, t: _ann(d, segmentation=[[2, 2, 1e12, 2, 8, 7, 2, 7]]), ("segmentation",)),
    ("poly_bool", lambda d, t: _ann(d, segmentation=[[True, 2, 8, 2, 8, 7, 2, 7]]), ("segmentation",)),
    ("rle_garbage", lambda d, t: _ann(d, segmentation={"size": [H, W], "counts": "abc"}), ("segmentation",)),
    ("rle_short", lambda d, t: _ann(d, segmentation={"size": [H, W], "counts": "0"}), ("segmentation",)),
    (
        "rle_size_bool",
        lambda d, t: _ann(d, segmentation={"size": [True, W], "counts": "0"}),
        ("segmentation",),
    ),
    ("image_id_list", lambda d, t: _ann(d, image_id=[1]), ("image_id", "annotations[0]")),
    ("category_true", lambda d, t: _ann(d, category_id=True), ("category_id",)),
    ("bbox_bool", lambda d, t: _ann(d, bbox=[True, 2, 6, 5]), ("bbox",)),
    ("bbox_outside", lambda d, t: _ann(d, bbox=[500, 500, 6, 5], segmentation=[]), ("bbox",)),
    (
        "dup_category_name",
        lambda d, t: (d["categories"][1].update(name="date"), d)[-1],
        ("name", "categories[1]"),
    ),
    ("width_huge", lambda d, t: (d["images"][0].update(width=10**9), d)[-1], ("width",)),
    ("deep_nesting", lambda d, t: "[" * 200_000 + "]" * 200_000, ("nested",)),
    ("not_utf8", lambda d, t: b"\xff\xfe{}", ("UTF-8",)),
    ("truncated", lambda d, t: json.dumps(d)[:-40], ("invalid JSON",)),
    ("top_list", lambda d, t: [], ("top level",)),
]


def _write_coco_case(tmp_path: Path, coco_dir: Path, mutate: Mutation) -> Path:
    data = mutate(_coco_dict(), tmp_path)
    path = coco_dir / "annotations.json"
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


COMMANDS: list[tuple[str, Callable[[Path, Path], list]]] = [
    ("export coco", lambda src, out: ["export", "coco", src, out]),
    ("export kitti", lambda src, out: ["export", "kitti", src, out]),
    ("export semantic", lambda src, out: ["export", "semantic", src, out]),
    ("dataset stats", lambda src, out: ["dataset", "stats", src]),
    ("dataset merge", lambda src, out: ["dataset", "merge", src, src, "--out", out]),
]


@pytest.mark.parametrize("name,mutate,names", COCO_CORPUS, ids=[c[0] for c in COCO_CORPUS])
def test_bad_coco_is_one_clean_line_for_every_command(tmp_path, coco_dir, name, mutate, names):
    path = _write_coco_case(tmp_path, coco_dir, mutate)
    for cmd, args in COMMANDS:
        out = tmp_path / f"out-{cmd.replace(' ', '-')}"
        r = invoke(*args(path, out))
        line = assert_clean_error(r, (2,), names)
        assert "annotations.json" in line, (cmd, line)
        assert not out.exists(), cmd
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")], cmd


def test_valid_coco_passes_every_command(tmp_path, coco_dir):
    """The corpus' base case is valid: every failure above comes from its one mutation."""
    for cmd, args in COMMANDS:
        out = tmp_path / f"out-{cmd.replace(' ', '-')}"
        r = invoke(*args(coco_dir / "annotations.json", out))
        assert r.exit_code == 0, (cmd, r.stdout, r.stderr, r.exception)


def test_traversal_never_copies_the_target(tmp_path, coco_dir):
    """Security: ``export coco`` of a file_name ``../secret/...`` must not copy the secret."""
    secret = _secret(tmp_path)
    d = _coco_dict()
    d["images"][0]["file_name"] = "../secret/id_rsa.png"
    (coco_dir / "annotations.json").write_text(json.dumps(d))
    invoke("export", "coco", coco_dir / "annotations.json", tmp_path / "out")
    copied = [p for p in tmp_path.rglob("*.png") if p.read_bytes() == secret.read_bytes() and p != secret]
    assert copied == []


# ---------------------------------------------------------------- KITTI
LABEL = "Car 0.00 0 -1.57 2.00 2.00 9.00 8.00 1.50 1.60 3.90 1.00 1.70 10.00 -1.57\n"
CALIB = "P2: 7.0e+02 0 6.0e+02 4.5e+01 0 7.0e+02 1.7e+02 -3.4e-01 0 0 1 2.7e-03\n"


def _kitti(tmp_path: Path) -> Path:
    root = tmp_path / "kitti"
    for sub in ("image_2", "label_2", "calib"):
        (root / sub).mkdir(parents=True)
    Image.new("RGB", (W, H)).save(root / "image_2" / "000000.png")
    (root / "label_2" / "000000.txt").write_text(LABEL)
    (root / "calib" / "000000.txt").write_text(CALIB)
    return root


def _replace(path: Path, data: bytes | None) -> None:
    path.unlink()
    if data is not None:
        path.write_bytes(data)


KITTI_CORPUS: list[tuple[str, Callable[[Path], None], tuple[str, ...]]] = [
    (
        "label_not_utf8",
        lambda r: _replace(r / "label_2" / "000000.txt", b"Car \xff\xfe 0 0\n"),
        ("000000.txt", "UTF-8"),
    ),
    (
        "label_is_dir",
        lambda r: (_replace(r / "label_2" / "000000.txt", None), (r / "label_2" / "000000.txt").mkdir()),
        ("000000.txt",),
    ),
    (
        "label_symlink_loop",
        lambda r: (
            _replace(r / "label_2" / "000000.txt", None),
            os.symlink("000000.txt", r / "label_2" / "000000.txt"),
        ),
        ("000000.txt",),
    ),
    (
        "dontcare_2_numbers",
        lambda r: (r / "label_2" / "000000.txt").write_text(LABEL + "DontCare 1 2\n"),
        ("000000.txt", "line 2"),
    ),
    ("calib_not_utf8", lambda r: _replace(r / "calib" / "000000.txt", b"P2: \xff\n"), ("calib", "UTF-8")),
    (
        "calib_nan",
        lambda r: (r / "calib" / "000000.txt").write_text(CALIB.replace("7.0e+02", "nan", 1)),
        ("calib", "line 1"),
    ),
    (
        "label_nan",
        lambda r: (r / "label_2" / "000000.txt").write_text(LABEL.replace("9.00", "nan")),
        ("000000.txt", "line 1"),
    ),
]


@pytest.mark.parametrize("name,mutate,names", KITTI_CORPUS, ids=[c[0] for c in KITTI_CORPUS])
def test_bad_kitti_is_one_clean_line(tmp_path, name, mutate, names):
    root = _kitti(tmp_path)
    assert invoke("dataset", "stats", root).exit_code == 0
    mutate(root)
    for cmd, args in COMMANDS:
        out = tmp_path / f"out-{cmd.replace(' ', '-')}"
        assert_clean_error(invoke(*args(root, out)), (2,), names)
        assert not out.exists()


# ---------------------------------------------------------------- YAML files: recipes, specs, plans
BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
    for i in range(9)
)
YAML_CORPUS: list[tuple[str, bytes, tuple[str, ...]]] = [
    ("alias_bomb", BOMB.encode(), ("alias",)),
    ("self_alias", b"a: &a [1, *a]\n", ("refers to itself",)),
    ("deep", ("a: " + "[" * 5000 + "]" * 5000 + "\n").encode(), ("nest",)),
    (
        "deep_block",
        "".join(" " * i + f"k{i}:\n" for i in range(80)).encode() + b" " * 80 + b"v: 1\n",
        ("nested",),
    ),
    ("not_utf8", b"name: \xff\xfe\n", ("UTF-8",)),
    ("syntax", b"a: [1, 2\n", ("line",)),
    ("nan", b"a: .nan\n", ("a", "finite")),
]


def _yaml_commands(tmp_path: Path) -> list[tuple[str, Callable[[Path], list]]]:
    return [
        ("recipes show", lambda p: ["recipes", "show", p]),
        ("generate", lambda p: ["generate", "-r", p, "-n", "1", "-o", tmp_path / "gen"]),
        ("train", lambda p: ["train", p, "-o", tmp_path / "run"]),
        ("mix plan", lambda p: ["mix", "plan", p]),
        ("active run", lambda p: ["active", "run", p, "--out", tmp_path / "loop"]),
        ("farm plan", lambda p: ["farm", "plan", "-r", p, "-n", "2", "-o", tmp_path / "job"]),
    ]


@pytest.mark.parametrize("name,data,names", YAML_CORPUS, ids=[c[0] for c in YAML_CORPUS])
def test_bad_yaml_is_one_clean_line_for_every_command(tmp_path, name, data, names):
    path = tmp_path / "in.yaml"
    path.write_bytes(data)
    for cmd, args in _yaml_commands(tmp_path):
        r = invoke(*args(path))
        line = assert_clean_error(r, (2,), names)
        assert "in.yaml" in line, (cmd, line)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.yaml"]


def test_recipe_nan_and_inf_are_refused(tmp_path):
    base = invoke("recipes", "show", "shapes").stdout.split("\n", 1)[1]
    for bad in (".nan", ".inf", "-.inf"):
        p = tmp_path / "r.yaml"
        p.write_text(
            base.replace("min_gap: ", f"min_gap: {bad} #", 1) if "min_gap: " in base else base + f"x: {bad}\n"
        )
        assert_clean_error(invoke("recipes", "show", p), (2,), ("r.yaml", "finite"))


# ---------------------------------------------------------------- checkpoints
def test_pickle_checkpoint_error_points_to_no_unsafe_option(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'PWNED'}",))

    ck = tmp_path / "evil.pt"
    ck.write_bytes(pickle.dumps({"model": Evil()}))
    r = invoke("export-model", ck, "--out", tmp_path / "m.onnx")
    line = assert_clean_error(r, (2,), ("evil.pt", "not a safe checkpoint"))
    assert "weights_only" not in line and "False" not in line
    assert not (tmp_path / "PWNED").exists()


def test_empty_backbone_weights_file_is_a_clean_error(tmp_path):
    from synthloop.training.backbones import _load_state_dict_file
    from synthloop.training.errors import TrainingError

    p = tmp_path / "w.pt"
    p.write_bytes(b"")
    with pytest.raises(TrainingError, match="w.pt: backbone.weights: cannot read weights file: empty"):
        _load_state_dict_file(p)


# ---------------------------------------------------------------- farm: shell injection, traversal
def _plan(tmp_path: Path, name: str = "job", frames: int = 2) -> Path:
    job = tmp_path / name
    r = invoke("farm", "plan", "-r", "shapes", "-n", str(frames), "-k", str(frames), "-o", job)
    assert r.exit_code == 0, (r.stdout, r.stderr)
    return job


def test_jobfiles_quote_hostile_names(tmp_path):
    """Security: a job folder named ``job$(touch INJECTED)`` must not run ``touch`` in the
    generated Slurm script or the Kubernetes pod's ``sh -c``."""
    job = _plan(tmp_path, "job$(touch INJECTED)`touch INJECTED2`;touch INJECTED3")
    sl, k8 = tmp_path / "a.sbatch", tmp_path / "k.yaml"
    r = invoke("farm", "jobfiles", job, "--slurm", sl, "--k8s", k8)
    assert r.exit_code == 0, r.stderr
    import yaml

    script = sl.read_text()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    # Run the script's shell lines with `exec` replaced by echo: no INJECTED file may appear.
    body = script.replace("exec ", "echo ").replace("set -euo pipefail", "")
    subprocess.run(
        ["bash", "-c", body], cwd=run_dir, env={**os.environ, "SLURM_ARRAY_TASK_ID": "0"}, check=True
    )
    args = yaml.safe_load(k8.read_text())["spec"]["template"]["spec"]["containers"][0]["args"][0]
    subprocess.run(
        ["sh", "-c", args.replace("exec synthloop", "echo synthloop")],
        cwd=run_dir,
        env={**os.environ, "JOB_COMPLETION_INDEX": "0"},
        check=True,
    )
    assert not [
        p for p in list(run_dir.iterdir()) + list(tmp_path.iterdir()) if "INJECTED" in p.name and p != job
    ]


def _fake_done_job(tmp_path: Path) -> Path:
    """A planned 2-frame job whose shards hold complete frames written by DatasetWriter."""
    from synthloop.dataset.folder import DatasetWriter
    from synthloop.dataset.types import Category
    from synthloop.farm.plan import load_plan, shard_dir

    job = _plan(tmp_path)
    plan = load_plan(job)
    for s in plan.shards:
        w = DatasetWriter(shard_dir(job, s), [Category(id=1, name="cube")])
        for f in s.frames:
            w.write_frame(
                f"{f:06d}",
                rgb=np.zeros((H, W, 3), np.uint8),
                instance_ids=np.zeros((H, W), np.uint16),
                depth=np.ones((H, W), np.float32),
                record={"width": W, "height": H, "objects": [], "frame_index": f},
            )
    return job


def _shard0(job: Path) -> Path:
    return sorted((job / "shards").iterdir())[0]


def test_farm_merge_record_path_traversal_stays_inside(tmp_path):
    job = _fake_done_job(tmp_path)
    rec_path = sorted((_shard0(job) / "records").glob("*.json"))[0]
    rec = json.loads(rec_path.read_text())
    rec["image"] = "../../../../x/pwn.png"
    rec_path.write_text(json.dumps(rec))
    out = tmp_path / "merged"
    r = invoke("farm", "merge", job, "-o", out)
    assert_clean_error(r, (2,), ("incomplete",))
    assert not (tmp_path / "x").exists() and not out.exists()
    assert not list(tmp_path.rglob("pwn.png"))


@pytest.mark.parametrize(
    "corrupt",
    ["stray_record", "truncated_record", "deleted_image", "truncated_manifest"],
)
def test_corrupt_farm_job_is_reported_not_crashed(tmp_path, corrupt):
    job = _fake_done_job(tmp_path)
    shard = _shard0(job)
    rec_path = sorted((shard / "records").glob("*.json"))[0]
    if corrupt == "stray_record":
        (shard / "records" / "notes.json").write_text("{}")
    elif corrupt == "truncated_record":
        rec_path.write_text(rec_path.read_text()[:20])
    elif corrupt == "deleted_image":
        next((shard / "images").iterdir()).unlink()
    else:
        (shard / "dataset.json").write_text('{"categ')
    r = invoke("farm", "status", job, "--json")
    assert r.exit_code == 0 and "Traceback" not in r.stdout + r.stderr, (r.stdout, r.stderr)
    done = sum(s["done"] for s in json.loads(r.stdout))
    assert done == (2 if corrupt in ("stray_record", "truncated_manifest") else 1)
    out = tmp_path / "merged"
    r = invoke("farm", "merge", job, "-o", out)
    if corrupt == "stray_record":
        assert r.exit_code == 0, r.stderr
    else:
        assert_clean_error(r, (2,), ("incomplete",) if done < 2 else ("dataset.json",))
        assert not out.exists()


# ---------------------------------------------------------------- a few real processes
@pytest.mark.parametrize(
    "args",
    [
        ["dataset", "stats", "{bad}"],
        ["recipes", "show", "{yaml}"],
    ],
)
def test_subprocess_exit_codes_and_one_line(tmp_path, coco_dir, args):
    bad = _write_coco_case(tmp_path, coco_dir, COCO_CORPUS[0][1])
    y = tmp_path / "bomb.yaml"
    y.write_text(BOMB)
    argv = [a.format(bad=bad, yaml=y) for a in args]
    p = subprocess.run(
        [sys.executable, "-m", "synthloop.cli", *argv],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
    )
    assert p.returncode == 2, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr


# ---------------------------------------------------------------- silent wrong results
def test_recipe_upper_bounds_and_bool_counts(tmp_path):
    import yaml

    base = yaml.safe_load(invoke("recipes", "show", "shapes").stdout.split("\n", 1)[1])
    cases = [
        ("render", {**base.get("render", {}), "quality": ["x"]}, "render.quality"),  # found by the fuzzer
        ("resolution", [100_000, 100_000], "resolution"),
        ("render", {**base.get("render", {}), "samples": True}, "render.samples"),
        ("render", {**base.get("render", {}), "samples": 10**9}, "render.samples"),
    ]
    for key, value, field in cases:
        p = tmp_path / "r.yaml"
        p.write_text(yaml.safe_dump({**base, key: value}))
        assert_clean_error(invoke("recipes", "show", p), (2,), ("r.yaml", field))


@pytest.mark.parametrize(
    "args",
    [
        ["generate", "-n", str(10**12), "-o", "{out}"],
        ["generate", "--threads", "-5", "-o", "{out}"],
        ["farm", "plan", "-n", str(10**12), "-o", "{out}"],
    ],
)
def test_absurd_numbers_are_refused_before_work(tmp_path, args):
    out = tmp_path / "out"
    r = invoke(*[a.format(out=out) for a in args])
    assert r.exit_code == 2 and "Traceback" not in r.stdout + r.stderr
    assert not out.exists()


def test_generate_refuses_a_folder_of_another_seed(tmp_path):
    job = _fake_done_job(tmp_path)  # shard folders are dataset folders written for seed 0
    from synthloop.dataset.folder import read_manifest
    from synthloop.generators.generate import generate_frames
    from synthloop.scenes.recipe import load_recipe

    shard = _shard0(job)
    man = read_manifest(shard)
    man["info"].update(seed=0, recipe_hash="0" * 64)
    (shard / "dataset.json").write_text(json.dumps(man))
    from synthloop.errors import DatasetError

    with pytest.raises(DatasetError, match=r"dataset.json: info.recipe_hash: the folder holds frames"):
        generate_frames(load_recipe("shapes"), 0, [5], shard, renderer_factory=lambda: None)


def test_dataset_merge_refuses_a_non_empty_output(tmp_path, coco_dir):
    out = tmp_path / "out"
    src = coco_dir / "annotations.json"
    assert invoke("dataset", "merge", src, src, "--out", out).exit_code == 0
    before = sorted(p.name for p in (out / "records").iterdir())
    d = _coco_dict()
    d["images"] = d["images"][:1]
    d["annotations"] = d["annotations"][:1]
    (coco_dir / "one.json").write_text(json.dumps(d))
    r = invoke("dataset", "merge", coco_dir / "one.json", "--out", out)
    assert_clean_error(r, (2,), (str(out), "not empty"))
    assert sorted(p.name for p in (out / "records").iterdir()) == before


@pytest.mark.parametrize("cat_id", [0, -1, 70000])
def test_semantic_export_refuses_ids_it_cannot_store(tmp_path, coco_dir, cat_id):
    d = _coco_dict()
    d["categories"][0]["id"] = cat_id
    d["annotations"][0]["category_id"] = cat_id
    (coco_dir / "annotations.json").write_text(json.dumps(d))
    out = tmp_path / "sem"
    assert_clean_error(
        invoke("export", "semantic", coco_dir / "annotations.json", out), (2,), ("categories",)
    )
    assert not out.exists()


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_corrupt_images_are_caught_on_export_and_merge(tmp_path, coco_dir, damage):
    img = coco_dir / "a.png"
    data = img.read_bytes()
    img.write_bytes(
        {"truncated": data[: len(data) // 2], "garbage": b"\x89PNG" + b"x" * 50, "empty": b""}[damage]
    )
    src = coco_dir / "annotations.json"
    for args in (
        ["export", "coco", src, tmp_path / "o1"],
        ["dataset", "merge", src, "--out", tmp_path / "o2"],
    ):
        assert_clean_error(invoke(*args), (2,), ("a.png",))
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()
    assert invoke("export", "coco", src, tmp_path / "o3", "--no-verify").exit_code == 0


# ---------------------------------------------------------------- OS faults
# A full disk is a fake that raises ENOSPC from every fsync (every atomic write fsyncs); a
# read-only folder is a fake that refuses new files and folders below it (tests may run as root,
# where chmod would not bite). Each command must exit 1 with one line naming the path and the
# errno, no traceback, and leave no output (or the old one unchanged).
def _snapshot(folder: Path) -> dict[str, bytes]:
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def full_disk(monkeypatch):
    def fsync(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", fsync)
    return "ENOSPC"


@pytest.fixture
def read_only(monkeypatch, tmp_path):
    """Everything below ``tmp_path / "ro"`` refuses new files and folders (EROFS)."""
    ro = tmp_path / "ro"
    ro.mkdir()

    def guard(dir_or_path):
        p = Path(dir_or_path).absolute()
        if p == ro or ro in p.parents:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(p))

    real_mkstemp, real_mkdtemp, real_mkdir = tempfile.mkstemp, tempfile.mkdtemp, Path.mkdir

    def mkstemp(*a, dir=None, **kw):
        guard(dir or ".")
        return real_mkstemp(*a, dir=dir, **kw)

    def mkdtemp(*a, dir=None, **kw):
        guard(dir or ".")
        return real_mkdtemp(*a, dir=dir, **kw)

    def mkdir(self, *a, **kw):
        if not self.exists():
            guard(self)
        return real_mkdir(self, *a, **kw)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)
    monkeypatch.setattr(Path, "mkdir", mkdir)
    return ro


@pytest.fixture
def coco_src(tmp_path: Path) -> Path:
    d = tmp_path / "src"
    _write_images(d)
    (d / "annotations.json").write_text(json.dumps(_coco_dict()))
    return d / "annotations.json"


def _cases(tmp_path: Path, coco_src: Path, out: Path) -> dict[str, list]:
    return {
        "export coco": ["export", "coco", coco_src, out],
        "export kitti": ["export", "kitti", coco_src, out],
        "dataset merge": ["dataset", "merge", coco_src, coco_src, "--out", out],
        "generate": ["generate", "-r", "shapes", "-n", "1", "-o", out],
    }


@pytest.mark.parametrize("fault", ["full_disk", "read_only"])
@pytest.mark.parametrize("cmd", ["export coco", "export kitti", "dataset merge", "generate"])
def test_fault_gives_one_line_exit_1_and_no_output(tmp_path, coco_src, request, fault, cmd):
    request.getfixturevalue(fault)
    parent = tmp_path / "ro" if fault == "read_only" else tmp_path
    out = parent / "out"
    r = invoke(*_cases(tmp_path, coco_src, out)[cmd])
    code = errno.ENOSPC if fault == "full_disk" else errno.EROFS
    assert_clean_error(r, (1,), (str(parent), errno.errorcode[code]))
    assert not out.exists()
    assert not [p for p in parent.iterdir() if p.name.startswith(".tmp")]


@pytest.mark.parametrize("cmd", ["export coco", "export kitti"])
def test_full_disk_leaves_an_existing_output_unchanged(tmp_path, coco_src, monkeypatch, cmd):
    out = tmp_path / "out"
    args = _cases(tmp_path, coco_src, out)[cmd]
    assert invoke(*args).exit_code == 0
    # a second source with other pixels, so a half-published export would differ
    for p in coco_src.parent.glob("*.png"):
        Image.fromarray(np.full((12, 16, 3), 7, np.uint8)).save(p)
    before = _snapshot(out)
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space")))
    assert_clean_error(invoke(*args), (1,), ("ENOSPC",))
    assert _snapshot(out) == before


def test_publish_failure_midway_restores_the_old_folder(tmp_path, monkeypatch):
    """``export kitti`` into an existing folder: a move that fails half-way is undone."""
    from synthloop.dataset import staging

    out = tmp_path / "out"
    (out / "labels").mkdir(parents=True)
    for i in range(4):
        (out / "labels" / f"{i}.txt").write_text(f"old {i}")
    (out / "marker.json").write_text("old marker")
    before = _snapshot(out)
    real = os.replace
    calls = {"n": 0}

    def flaky(a, b):
        calls["n"] += 1
        if calls["n"] == 5:
            raise OSError(errno.EIO, "I/O error", str(b))
        return real(a, b)

    with pytest.raises(OSError), staging.staged_dir(out, markers=["marker.json"]) as tmp:
        (tmp / "labels").mkdir()
        for i in range(4):
            (tmp / "labels" / f"{i}.txt").write_text(f"new {i}")
        (tmp / "marker.json").write_text("new marker")
        monkeypatch.setattr(staging.os, "replace", flaky)
    monkeypatch.setattr(staging.os, "replace", real)
    assert _snapshot(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


@pytest.mark.parametrize("fault", ["full_disk", "read_only"])
def test_farm_merge_fault_leaves_no_output_and_can_be_rerun(tmp_path, request, monkeypatch, fault):
    job = _fake_done_job(tmp_path)
    parent = tmp_path / "ro" if fault == "read_only" else tmp_path
    if fault == "read_only":
        request.getfixturevalue("read_only")
    out = parent / "merged"
    with monkeypatch.context() as m:
        if fault == "full_disk":
            m.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space")))
        r = invoke("farm", "merge", job, "-o", out)
        assert_clean_error(r, (1,), (str(parent),))
        assert not out.exists()
        assert not [p for p in parent.iterdir() if p.name.startswith(".tmp")]
    if fault == "full_disk":  # a re-run after the disk has room succeeds, COCO included
        r = invoke("farm", "merge", job, "-o", out)
        assert r.exit_code == 0, r.stderr
        assert json.loads((out / "dataset.json").read_text())["info"]["complete"] is True
        assert (out / "coco" / "annotations.json").is_file()


def test_farm_merge_writes_coco_before_publishing(tmp_path, monkeypatch):
    """A failure while writing COCO must not leave a merged folder marked complete."""
    from synthloop.farm import merge as farm_merge

    job = _fake_done_job(tmp_path)

    def boom(*a, **kw):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x"))

    monkeypatch.setattr(farm_merge, "write_coco", boom)
    out = tmp_path / "merged"
    assert_clean_error(invoke("farm", "merge", job, "-o", out), (1,), ("ENOSPC",))
    assert not out.exists()


def test_failed_worker_reason_shows_in_status(tmp_path, monkeypatch):
    """``farm run`` failing a shard whose frames are all done: ``farm status`` says why."""
    from synthloop.farm import executors

    job = _fake_done_job(tmp_path)
    crash = [sys.executable, "-c", "import sys; sys.stderr.write('boom: GPU lost\\n'); sys.exit(3)"]
    monkeypatch.setattr(executors, "worker_command", lambda job, s, threads, **kw: crash)
    r = invoke("farm", "run", job, "-q")
    assert r.exit_code == 1 and "2 shard(s) failed" in r.stderr
    st = json.loads(invoke("farm", "status", job, "--json").stdout)
    assert [s["done"] for s in st] == [1, 1]
    assert all("exit 3" in s["worker_error"] and "boom: GPU lost" in s["worker_error"] for s in st)
    monkeypatch.setattr(
        executors, "worker_command", lambda job, s, threads, **kw: [sys.executable, "-c", "pass"]
    )
    assert invoke("farm", "run", job, "-q").exit_code == 0
    assert [s["worker_error"] for s in json.loads(invoke("farm", "status", job, "--json").stdout)] == [
        None,
        None,
    ]


@pytest.mark.parametrize("device", ["tpu:7", "cuda:x", ""])
def test_unknown_device_is_a_spec_error(tmp_path, device):
    import yaml

    p = tmp_path / "spec.yaml"
    p.write_text(
        yaml.safe_dump(
            {"datasets": [{"kind": "synthetic", "paths": [str(tmp_path)]}], "epochs": 1, "device": device}
        )
    )
    assert_clean_error(invoke("train", p, "-o", tmp_path / "run"), (2,), ("spec.yaml", "device"))
    assert not (tmp_path / "run").exists()


def test_decompression_bomb_image_is_a_clean_error(tmp_path, coco_dir, monkeypatch):
    """PIL refuses an image above MAX_IMAGE_PIXELS (here lowered so a 16x12 image trips it)."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)
    d = _coco_dict()
    for im in d["images"]:
        del im["width"], im["height"]  # sizes come from the headers
    (coco_dir / "annotations.json").write_text(json.dumps(d))
    line = assert_clean_error(invoke("dataset", "stats", coco_dir / "annotations.json"), (2,), ("file_name",))
    assert "decompression bomb" in line.lower()


def test_fuzz_findings_are_refused(tmp_path, coco_dir):
    """Inputs the fuzzer found accepted in silence: a 2**63 box, a nested-list annotation id,
    a NaN KITTI score and a KITTI truncation of 1e12."""
    for mutate, field in (
        (lambda d: d["annotations"][0].update(bbox=[2, 2, 2**63, 5]), "bbox"),
        (lambda d: d["annotations"][0].update(id=[[[1]]]), "id"),
        (lambda d: d["categories"][0].update(id=2**63), "32-bit"),
    ):
        d = _coco_dict()
        mutate(d)
        (coco_dir / "annotations.json").write_text(json.dumps(d))
        assert_clean_error(invoke("dataset", "stats", coco_dir / "annotations.json"), (2,), (field,))
    for line, field in (
        (LABEL.strip() + " nan\n", "score"),
        (LABEL.replace("0.00", "1e12", 1), "truncated"),
        (LABEL.replace("8.00", "1e12", 1), "x1"),
    ):
        root = tmp_path / field
        root.mkdir()
        kitti = _kitti(root)
        (kitti / "label_2" / "000000.txt").write_text(line)
        assert_clean_error(invoke("dataset", "stats", kitti), (2,), ("000000.txt", field))
