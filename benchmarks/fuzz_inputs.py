"""Fuzz the readers of user files with a seeded random mutator: COCO JSON, KITTI labels, recipes.

Each case mutates a small valid file (change a value to NaN/inf/1e12/bool/list/str/None/-1,
delete or duplicate a key, truncate, flip bytes, nest deeply) and runs the CLI command that reads
it in a child process (``dataset stats`` for COCO and KITTI, ``recipes show`` for recipes), so a
segfault or a hang is caught as a crash, never taken down with the fuzzer. A case is:

* ``clean_error``: exit 2 (or 1), one stderr line per problem (all naming the same file first),
  no traceback;
* ``accepted``: exit 0 (the mutation left a valid file, e.g. a changed area);
* ``crash``: a traceback, a signal, another exit code, stray stderr lines, or a timeout.

    python benchmarks/fuzz_inputs.py --cases 2000 --seed 0 --out benchmarks/results/fuzz_inputs.json

prints and writes JSON counts per format: tried / clean_error / accepted / crash, plus the first
crashing inputs (saved under ``--keep``). Cases run in a pool of worker processes that each import
synthloop once and fork per case (``--jobs``).
"""

from __future__ import annotations

import argparse
import copy
import json
import multiprocessing as mp
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

W, H = 16, 12
NASTY: list[Any] = [
    float("nan"),
    float("inf"),
    -float("inf"),
    1e12,
    -1e12,
    True,
    False,
    None,
    -1,
    0,
    2**63,
    "x",
    "",
    [],
    {},
    [1],
    [[1, 2]],
    "../../../../etc/hostname",
]


def base_coco() -> dict:
    return {
        "images": [{"id": 1, "file_name": "a.png", "width": W, "height": H}],
        "categories": [{"id": 1, "name": "date", "keypoints": [], "skeleton": []}],
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
            {
                "id": 2,
                "image_id": 1,
                "category_id": 1,
                "bbox": [1, 1, 4, 4],
                "segmentation": {"size": [H, W], "counts": "=4800000S4"},
                "area": 16,
                "iscrowd": 1,
            },
        ],
    }


KITTI_LINE = "Car 0.00 0 -1.57 2.00 2.00 9.00 8.00 1.50 1.60 3.90 1.00 1.70 10.00 -1.57"
KITTI_TOKENS = ["nan", "inf", "-inf", "1e400", "x", "", "-1", "4", "1e12", "\xff", "DontCare", "0.5"]


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*prefix, i))
    return out


def _set(obj: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    parent = obj
    for k in path[:-1]:
        parent = parent[k]
    parent[path[-1]] = value
    return obj


def mutate_tree(data: Any, rng: random.Random) -> Any:
    """1-3 random edits of a JSON-like tree: set a nasty value, delete, duplicate or nest."""
    data = copy.deepcopy(data)
    for _ in range(rng.randint(1, 3)):
        paths = _paths(data)
        path = rng.choice(paths)
        op = rng.random()
        if op < 0.6 or not path:
            data = _set(data, path, copy.deepcopy(rng.choice(NASTY)))
        elif op < 0.75:
            parent = data
            for k in path[:-1]:
                parent = parent[k]
            if isinstance(parent, dict):
                parent.pop(path[-1], None)
            elif isinstance(parent, list) and path[-1] < len(parent):
                parent.pop(path[-1])
        elif op < 0.9:
            parent = data
            for k in path[:-1]:
                parent = parent[k]
            if isinstance(parent, list):
                parent.append(copy.deepcopy(parent[path[-1]]))
            else:
                data = _set(data, path, [copy.deepcopy(parent[path[-1]])] * 2)
        else:
            v = 0
            for _ in range(rng.choice([10, 100, 200])):
                v = [v]
            data = _set(data, path, v)
    return data


def mutate_bytes(b: bytes, rng: random.Random) -> bytes:
    op = rng.random()
    if op < 0.4 and b:
        return b[: rng.randrange(len(b))]
    arr = bytearray(b)
    for _ in range(rng.randint(1, 4)):
        if arr:
            arr[rng.randrange(len(arr))] = rng.randrange(256)
    return bytes(arr)


def _dump(obj: Any) -> str:
    return json.dumps(obj, allow_nan=True)


def make_case(fmt: str, rng: random.Random, folder: Path, recipe_text: str, mutate: bool = True) -> list[str]:
    """Write one mutated input under ``folder`` (the valid base one unless ``mutate``); returns
    the CLI argv that reads it."""
    if fmt == "coco":
        Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(folder / "a.png")
        path = folder / "ann.json"
        if not mutate:
            path.write_text(_dump(base_coco()))
        elif rng.random() < 0.85:
            path.write_text(_dump(mutate_tree(base_coco(), rng)))
        else:
            path.write_bytes(mutate_bytes(_dump(base_coco()).encode(), rng))
        return ["dataset", "stats", str(path)]
    if fmt == "kitti":
        for sub in ("image_2", "label_2", "calib"):
            (folder / sub).mkdir()
        Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(folder / "image_2" / "000000.png")
        toks = KITTI_LINE.split()
        lines = [list(toks), list(toks)]
        for _ in range(rng.randint(1, 3) if mutate else 0):
            line = rng.choice(lines)
            r = rng.random()
            if not line:
                line.append(rng.choice(KITTI_TOKENS))
            elif r < 0.6:
                line[rng.randrange(len(line))] = rng.choice(KITTI_TOKENS)
            elif r < 0.8:
                del line[rng.randrange(len(line)) :]
            else:
                line.append(rng.choice(KITTI_TOKENS))
        text = "\n".join(" ".join(t) for t in lines) + "\n"
        data = text.encode("utf-8", "surrogateescape")
        if mutate and rng.random() < 0.2:
            data = mutate_bytes(data, rng)
        (folder / "label_2" / "000000.txt").write_bytes(data)
        calib = "P2: 7.0e+02 0 6.0e+02 4.5e+01 0 7.0e+02 1.7e+02 -3.4e-01 0 0 1 2.7e-03\n"
        if mutate and rng.random() < 0.3:
            calib = calib.replace(rng.choice(["7.0e+02", "0", "1"]), rng.choice(KITTI_TOKENS), 1)
        (folder / "calib" / "000000.txt").write_text(calib, errors="surrogateescape")
        return ["dataset", "stats", str(folder)]
    import yaml

    base = yaml.safe_load(recipe_text)
    path = folder / "r.yaml"
    if not mutate:
        path.write_text(recipe_text)
    elif rng.random() < 0.85:
        tree = mutate_tree(base, rng)
        try:
            path.write_text(yaml.safe_dump(tree, sort_keys=False))
        except RecursionError:  # too deep for PyYAML's writer: JSON is YAML too
            path.write_text(_dump(tree))
    else:
        path.write_bytes(mutate_bytes(recipe_text.encode(), rng))
    return ["recipes", "show", str(path), "--sample", "0:0"]


def run_case(argv: list[str], timeout: float) -> tuple[str, str]:
    """Fork; the child runs the CLI with stderr to a pipe. Returns (outcome, detail)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(r)
        os.dup2(w, 2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        signal.alarm(int(timeout))
        code = 0
        try:
            from synthloop.cli import app

            app(argv, prog_name="synthloop")
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except BaseException:  # noqa: BLE001 - uncaught means a traceback: a crash
            import traceback

            traceback.print_exc()
            code = 99
        sys.stderr.flush()
        os._exit(code)
    os.close(w)
    chunks = []
    while True:
        c = os.read(r, 65536)
        if not c:
            break
        chunks.append(c)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    err = b"".join(chunks).decode("utf-8", "replace")
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return "crash", f"signal {signal.Signals(sig).name}" + (" (timeout)" if sig == signal.SIGALRM else "")
    code = os.WEXITSTATUS(status)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if code == 0:
        return "accepted", ""
    # one line per problem (validators may list several), each naming the same file first
    if code in (1, 2) and lines and "Traceback" not in err and len({ln.split(": ")[0] for ln in lines}) == 1:
        return "clean_error", lines[0][:200]
    return "crash", f"exit {code}: {err[-600:]}"


def _worker(args: tuple[str, int, float, str]) -> tuple[str, int, str, str, list[str]]:
    fmt, seed, timeout, recipe_text = args
    rng = random.Random(f"{fmt}-{seed}")
    with tempfile.TemporaryDirectory(prefix="synthloop-fuzz-") as d:
        argv = make_case(fmt, rng, Path(d), recipe_text)
        outcome, detail = run_case(argv, timeout)
        kept = []
        if outcome != "clean_error":
            kept = [
                str(p.relative_to(d)) + ": " + p.read_bytes()[:400].decode("utf-8", "replace")
                for p in sorted(Path(d).rglob("*"))
                if p.is_file() and p.suffix != ".png"
            ]
    return fmt, seed, outcome, detail, kept


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=2000, help="cases in total, split over the formats")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds per case before it is a hang")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/fuzz_inputs.json"))
    a = ap.parse_args()
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    import torch

    torch.set_num_threads(1)
    import synthloop.cli  # noqa: F401 - imported once here; every case forks from this process
    from synthloop.scenes.recipe import load_recipe, recipe_to_yaml

    recipe_text = recipe_to_yaml(load_recipe("shapes"))
    fmts = ["coco", "kitti", "recipe"]
    for fmt in fmts:  # the unmutated inputs are valid: every error below comes from a mutation
        with tempfile.TemporaryDirectory(prefix="synthloop-fuzz-") as d:
            outcome, detail = run_case(
                make_case(fmt, random.Random(0), Path(d), recipe_text, False), a.timeout
            )
            assert outcome == "accepted", (fmt, outcome, detail)
    tasks = [(fmts[i % 3], a.seed * 1_000_000 + i, a.timeout, recipe_text) for i in range(a.cases)]
    counts = {f: {"tried": 0, "clean_error": 0, "accepted": 0, "crash": 0} for f in fmts}
    crashes: list[dict] = []
    examples: dict[str, list[str]] = {f: [] for f in fmts}
    accepted: dict[str, list[list[str]]] = {f: [] for f in fmts}
    t0 = time.time()
    with mp.get_context("fork").Pool(a.jobs) as pool:
        for fmt, seed, outcome, detail, kept in pool.imap_unordered(_worker, tasks, chunksize=8):
            counts[fmt]["tried"] += 1
            counts[fmt][outcome] += 1
            if outcome == "clean_error" and len(examples[fmt]) < 8:
                examples[fmt].append(detail)
            if outcome == "accepted" and len(accepted[fmt]) < 12:
                accepted[fmt].append(kept)
            if outcome == "crash" and len(crashes) < 50:
                crashes.append({"format": fmt, "case": seed, "detail": detail, "files": kept})
    total = {k: sum(c[k] for c in counts.values()) for k in ("tried", "clean_error", "accepted", "crash")}
    result = {
        "command": " ".join(["python", "benchmarks/fuzz_inputs.py", *sys.argv[1:]]),
        "seed": a.seed,
        "seconds": round(time.time() - t0, 1),
        "total": total,
        "by_format": counts,
        "crashes": crashes,
        "clean_error_examples": examples,
        "accepted_examples": accepted,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("total", "by_format", "seconds")}, indent=1))


if __name__ == "__main__":
    main()
