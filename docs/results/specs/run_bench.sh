#!/usr/bin/env bash
# issue 5: Mask R-CNN loop throughput, variants + profile
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee $OUT/gpu.txt
python3 -c "import torch, torchvision; print(torch.__version__, torchvision.__version__)" | tee -a $OUT/gpu.txt
timeout ${BT:-420} python3 benchmarks/train.py --spec .carry/gpu/specs/maskrcnn_ptft.yaml --iters 60 --warmup 10 --variants "${VARIANTS-}" ${PROFILE---profile} --out $OUT/train_bench.json > $OUT/bench.log 2>&1; echo rc=$?
grep -v '"kind"' $OUT/bench.log | tail -120
