#!/usr/bin/env bash
# issue 5, session 5: the ResNet-50-FPN comparison again, with CUDA graphs + batched NMS (defaults)
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
timeout ${BT:-400} python3 benchmarks/train.py --spec .carry/gpu/specs/maskrcnn_r50_bench.yaml --iters 40 --warmup 10 --variants "${VARIANTS-fp32,no_cuda_graph}" --out $OUT/train_bench_r50.json > $OUT/bench_r50.log 2>&1; echo rc=$?
grep -v '"kind"' $OUT/bench_r50.log | tail -50
