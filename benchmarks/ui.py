"""Web UI benchmark: server time of the dataset grid and of a scene-parameter filter at 10,000 frames.

    python benchmarks/ui.py [--frames 10000] [--work DIR] [--out benchmarks/results/ui.json]

Generates a synthloop dataset folder of ``--frames`` frame records without rendering: tiny
32x24 images, instance maps and depth written through ``DatasetWriter``, 1-6 objects per frame
(random boxes, occlusion, truncation) and the scene parameters of the bundled ``tabletop``
recipe (names and types of one sampled SceneSpec; values drawn uniformly around it, seeded).
Then, through the ASGI app in-process (server time: request in, response out, no network):

* ``index_build_s``: first open of the dataset with an empty UI cache (reads every record, builds
  and saves the index; the first grid page comes with it);
* ``grid_first_page_ms``: the first grid page (48 thumbnails) once its thumbnails are cached,
  median and max of 20 requests. Target < 300 ms;
* ``grid_first_page_fresh_process_ms``: the same page from a new app instance (index read back
  from the on-disk cache, nothing in memory);
* ``param_filter_ms``: the grid filtered by a scene-parameter range, median / max of 20.
  Target < 1000 ms; ``param_class_occlusion_filter_ms``: parameter + class + occlusion.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from starlette.testclient import TestClient

from synthloop.atomic import atomic_write_json
from synthloop.dataset.folder import DatasetWriter, frame_stem
from synthloop.dataset.types import Category
from synthloop.scenes.recipe import load_recipe
from synthloop.scenes.sampler import sample_scene
from synthloop.ui.app import create_app

W, H = 32, 24


def write_records(root: Path, frames: int, seed: int = 0) -> Path:
    """A dataset folder of ``frames`` tiny frames with tabletop-like scene parameters."""
    template = sample_scene(load_recipe("tabletop"), seed, 0).params
    numeric = {
        k: float(v) for k, v in template.items() if isinstance(v, int | float) and not isinstance(v, bool)
    }
    cats = [Category(1, "date"), Category(2, "fig"), Category(3, "hazelnut")]
    writer = DatasetWriter(root, cats, info={"benchmark": "ui"})
    rng = np.random.default_rng(seed)
    done = writer.completed_stems()
    for k in range(frames):
        stem = frame_stem(k)
        if stem in done:
            rng.random(64)  # keep the stream position independent of resumption
            continue
        rgb = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
        inst = np.zeros((H, W), np.uint16)
        objects = []
        for j in range(int(rng.integers(1, 7))):
            x1, y1 = float(rng.integers(0, W - 8)), float(rng.integers(0, H - 8))
            x2, y2 = x1 + float(rng.integers(4, 9)), y1 + float(rng.integers(4, 9))
            inst[int(y1) : int(y2), int(x1) : int(x2)] = j + 1
            objects.append(
                {
                    "category_id": int(rng.integers(1, 4)),
                    "bbox": [x1, y1, x2, y2],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": False,
                    "instance_id": j + 1,
                    "occlusion": round(float(rng.random()), 4),
                    "truncation": round(float(rng.random() * 0.3), 4),
                }
            )
        params = {k2: round(v * float(rng.uniform(0.5, 1.5)), 6) for k2, v in numeric.items()}
        params.update({k2: v for k2, v in template.items() if k2 not in numeric})
        record = {"width": W, "height": H, "source": "synthetic", "objects": objects, "scene_params": params}
        depth = np.where(inst > 0, 0.5, np.inf).astype(np.float32)
        writer.write_frame(stem, rgb=rgb, instance_ids=inst, depth=depth, record=record)
    return root


def timed(client: TestClient, url: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = client.get(url)
        out.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200, (url, r.status_code, r.text[:200])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=10000)
    ap.add_argument("--work", type=Path, default=None, help="workspace folder (kept; default: a temp one)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/ui.json"))
    args = ap.parse_args()
    tmp = None
    if args.work is None:
        tmp = tempfile.TemporaryDirectory()
        args.work = Path(tmp.name)
    t0 = time.perf_counter()
    write_records(args.work / "bench", args.frames)
    gen_s = time.perf_counter() - t0
    shutil.rmtree(args.work / ".synthloop-ui-cache", ignore_errors=True)  # measure a real index build
    client = TestClient(create_app(args.work))
    t0 = time.perf_counter()
    first = client.get("/dataset?p=bench")
    index_s = time.perf_counter() - t0
    for i in range(48):  # cache the first page's thumbnails
        assert client.get(f"/pic?p=bench&i={i}").status_code == 200
    grid = timed(client, "/dataset?p=bench", 20)
    fresh = timed(TestClient(create_app(args.work)), "/dataset?p=bench", 1)
    pname = "scene.camera_distance"
    flt = timed(client, f"/dataset?p=bench&param={pname}&pmin=0.15&pmax=0.2", 20)
    combo = timed(client, f"/dataset?p=bench&param={pname}&pmin=0.15&pmax=0.25&cls=2&occ_max=0.3", 20)
    hits = first.text.count('data-frame="')
    flt_page = client.get(f"/dataset?p=bench&param={pname}&pmin=0.15&pmax=0.2").text
    flt_hits = flt_page.split('<span id="hits">')[1]
    result = {
        "frames": args.frames,
        "generate_s": round(gen_s, 1),
        "index_build_s": round(index_s, 2),
        "first_page_thumbnails": hits,
        "grid_first_page_ms": {"median": round(statistics.median(grid), 1), "max": round(max(grid), 1)},
        "grid_first_page_fresh_process_ms": round(fresh[0], 1),
        "param_filter": f"{pname} in [0.15, 0.2]",
        "param_filter_hits": int(flt_hits.split("<")[0]),
        "param_filter_ms": {"median": round(statistics.median(flt), 1), "max": round(max(flt), 1)},
        "param_class_occlusion_filter_ms": {
            "median": round(statistics.median(combo), 1),
            "max": round(max(combo), 1),
        },
        "targets_ms": {"grid_first_page": 300, "param_filter": 1000},
        "command": f"python benchmarks/ui.py --frames {args.frames}",
    }
    print(result)
    atomic_write_json(args.out, result)
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
