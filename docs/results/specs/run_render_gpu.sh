#!/usr/bin/env bash
# GPU render nodes: frames/s of the default render settings on an NVIDIA GPU against the CPU, on
# the same scenes, same process set-up (one warm Blender worker per setting, A B A B).
# Needs Python 3.11 with bpy 4.2 (`pip install -e '.[test]'`) and an NVIDIA driver; run from the
# repository root. Goal of the render issue: GPU frames/s >= 20x the 2-core CPU figure in
# docs/results/render_quality.json (the CPU run here is this machine's CPU, for the ratio).
set -euo pipefail
OUT=${OUT:-benchmarks/results}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/render_gpu_device.txt"
for dev in ${DEVICES:-optix cuda}; do
  python benchmarks/render_quality.py --device "$dev" --candidates legacy,standard --rounds 2 \
    --scenes "${SCENES:-4}" --width "${WIDTH:-640}" --height "${HEIGHT:-480}" --ref-spp "${REF_SPP:-1024}" \
    --out "$OUT/render_quality_$dev.json"
done
python benchmarks/render_quality.py --device cpu --candidates legacy,standard --rounds 2 \
  --scenes "${SCENES:-4}" --width "${WIDTH:-640}" --height "${HEIGHT:-480}" --ref-spp "${REF_SPP:-1024}" \
  --out "$OUT/render_quality_cpu.json"
# the farm on GPUs: one worker per GPU
python -m synthloop.cli farm plan --recipe tabletop --frames 64 --seed 0 --shards 8 --out /tmp/gpujob --device optix
/usr/bin/time -v python -m synthloop.cli farm run /tmp/gpujob --gpus "$(nvidia-smi -L | wc -l)" --quiet \
  2> "$OUT/render_gpu_farm_time.txt" | tail -1
