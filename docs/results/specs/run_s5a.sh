#!/usr/bin/env bash
# issue 5, session 5: where the step syncs (default and matrix_nms), then matrix_nms throughput + its profile
# (as run; the batched NMS variant called "matrix_nms" here has since become the default, and
# the variant that turns it off is "torchvision_nms")
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
S=.carry/gpu/specs/maskrcnn_ptft.yaml
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee $OUT/gpu.txt
for v in "" matrix_nms; do
  timeout 120 python3 benchmarks/sync_sites.py --spec $S --iters 12 --variant "$v" --out $OUT/sync_${v:-default}.json 2>$OUT/sync_${v:-default}.err | tee $OUT/sync_${v:-default}.txt | head -40
done
timeout ${BT:-330} python3 benchmarks/train.py --spec $S --iters 60 --warmup 10 --variants "${VARIANTS-matrix_nms,per_image_heads}" --profile --profile-variant matrix_nms --out $OUT/train_bench.json > $OUT/bench.log 2>&1; echo rc=$?
grep -v '"kind"' $OUT/bench.log | tail -75
