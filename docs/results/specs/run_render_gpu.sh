#!/usr/bin/env bash
# GPU render nodes: time per annotated frame and quality of the render settings on an NVIDIA GPU
# (OptiX, CUDA), the same benchmark as the CPU table (benchmarks/render_quality.py), then the farm's
# throughput on full-size frames with PER_GPU workers per GPU. Run from the repository root.
# Environment: PY (the driver's Python; default python3) and, where that Python has no bpy,
# SYNTHLOOP_BLENDER_PYTHON (a Python 3.11 with bpy for the Blender workers, see render_node_py311.sh).
# DEVICES (default "optix cuda"), CPU=1 to also run the node's CPU, SCENES/WIDTH/HEIGHT/REF_SPP/
# CANDIDATES as benchmarks/render_quality.py, FRAMES and FARM_DEVICE (default optix) for the farm
# (default 64 frames), STEP_TIMEOUT (s) per step.
# Goal of the render issue: GPU frames/s >= 20x the 2-core CPU's (docs/results/render_quality.md).
set -euo pipefail
OUT=${OUT:-benchmarks/results}
PY=${PY:-python3}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/render_gpu_device.txt"
devices="${DEVICES:-optix cuda}"
[ "${CPU:-0}" = 1 ] && devices="$devices cpu"
for dev in $devices; do
  timeout "${STEP_TIMEOUT:-1800}" "$PY" benchmarks/render_quality.py --device "$dev" --candidates "${CANDIDATES:-legacy,standard}" \
    --rounds "${ROUNDS:-2}" --scenes "${SCENES:-3}" --width "${WIDTH:-320}" --height "${HEIGHT:-240}" \
    --ref-spp "${REF_SPP:-512}" --cache "/tmp/render_quality_cache_$dev" --out "$OUT/render_quality_$dev.json" \
    || echo "render_quality on $dev failed"
done
# the farm on GPUs: PER_GPU workers per GPU (default 4: one worker leaves the GPU mostly idle),
# full-size tabletop frames
gpus=$(nvidia-smi -L | wc -l)
"$PY" -m synthloop.cli farm plan --recipe tabletop --frames "${FRAMES:-64}" --seed 100 --shards 8 \
  --out /tmp/gpujob --device "${FARM_DEVICE:-optix}" > /dev/null
t0=$(date +%s.%N)
timeout "${STEP_TIMEOUT:-1800}" "$PY" -m synthloop.cli farm run /tmp/gpujob --gpus "$gpus" --workers-per-gpu "${PER_GPU:-4}" --quiet > "$OUT/render_gpu_farm.jsonl" 2>&1 || true
t1=$(date +%s.%N)
"$PY" - "$t0" "$t1" "${FRAMES:-64}" "$gpus" <<'PY' | tee "$OUT/render_gpu_farm.txt"
import sys
t0, t1, frames, gpus = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
print(f"farm run --gpus {gpus}: {frames} frames in {t1 - t0:.1f} s = {frames / (t1 - t0):.2f} frames/s (process start included)")
PY
