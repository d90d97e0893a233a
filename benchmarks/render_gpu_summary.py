"""Frames per second of GPU render runs, from their JSON-lines progress logs, against a CPU figure.

    python benchmarks/render_gpu_summary.py --cpu-fps 0.129 \
        --run "generate, cuda, 1 worker=docs/results/render_gpu/generate_cuda_1worker.jsonl" \
        --run "farm, cuda, 4 workers=docs/results/render_gpu/farm_cuda_4workers.jsonl" \
        --out docs/results/render_gpu/summary.json

Each ``--run NAME=LOG`` is the ``--quiet`` output of ``synthloop generate`` or ``synthloop farm
run`` (events ``start``, ``frame``, ``end``; ``t`` in seconds since the job started). A run's
rate is its completed frames over the ``end`` event's ``t`` (process and Blender start-up
included, as in the CPU figure), and ``steady_fps`` the rate between its first and last frame
events (start-up excluded). ``x_cpu`` is ``fps / --cpu-fps``. Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synthloop.atomic import atomic_write_json


def run_rates(lines: list[str]) -> dict[str, Any]:
    """``frames``, ``seconds`` (the end event's ``t``), ``fps`` and ``steady_fps`` of one log's
    JSON lines (lines that are not JSON objects are skipped). Pure."""
    events = []
    for line in lines:
        try:
            ev = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(ev, dict):
            events.append(ev)
    frames = [e for e in events if e.get("event") == "frame" and not e.get("failed")]
    end = next((e for e in events if e.get("event") == "end"), None)
    if end is None or not frames:
        raise SystemExit("a log without frames or an end event: the run did not finish")
    seconds = float(end["t"])
    span = float(frames[-1]["t"]) - float(frames[0]["t"])
    return {
        "frames": len(frames),
        "seconds": seconds,
        "fps": len(frames) / seconds,
        "steady_fps": (len(frames) - 1) / span if span > 0 else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", action="append", required=True, help="NAME=LOG (JSON lines)")
    ap.add_argument("--cpu-fps", type=float, required=True, help="the CPU's frames/s to compare with")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if not args.cpu_fps > 0:
        raise SystemExit("--cpu-fps must be > 0")
    rows = {}
    for spec in args.run:
        name, sep, path = spec.rpartition("=")
        if not sep or not name:
            raise SystemExit(f"--run {spec!r}: expected NAME=LOG")
        try:
            lines = Path(path).read_text().splitlines()
        except OSError as e:
            raise SystemExit(f"{path}: {e.strerror}") from None
        r = run_rates(lines)
        rows[name] = {**r, "x_cpu": r["fps"] / args.cpu_fps, "log": path}
        steady = f"{r['steady_fps']:.2f}" if r["steady_fps"] else "-"
        print(f"{name:>28}: {r['frames']:4d} frames in {r['seconds']:6.1f} s = {r['fps']:.2f} frames/s "
              f"(steady {steady}), {rows[name]['x_cpu']:.1f}x the CPU")  # fmt: skip
    if args.out:
        atomic_write_json(args.out, {"cpu_fps": args.cpu_fps, "runs": rows})


if __name__ == "__main__":
    main()
