#!/usr/bin/env bash
# issue 5, session 5: CUDA-graph tests on the GPU, then throughput with the backbone graphed
# (as run; the batched NMS variant called "matrix_nms" here has since become the default, and
# the variant that turns it off is "torchvision_nms")
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
S=.carry/gpu/specs/maskrcnn_ptft.yaml
timeout 200 python3 -m pytest -q -p no:cacheprovider tests/test_cuda_graph.py tests/test_rcnn_batched.py "tests/test_train_loop.py::test_cuda_graph_backbone_replays_every_step" 2>&1 | tail -15 | tee $OUT/pytest.txt
timeout ${BT:-380} python3 benchmarks/train.py --spec $S --iters 60 --warmup 10 --variants "${VARIANTS-matrix_nms,no_cuda_graph}" ${PROFILE---profile} --profile-variant "${PV-}" --out $OUT/train_bench.json > $OUT/bench.log 2>&1; echo rc=$?
grep -v '"kind"' $OUT/bench.log | tail -75
grep '"kind"' $OUT/bench.log | grep cuda_graph | tail -3
