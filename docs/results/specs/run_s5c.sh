#!/usr/bin/env bash
# issue 5, session 5 (final): GPU tests, then throughput with graphs + batched NMS (the defaults) and variants
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
S=.carry/gpu/specs/maskrcnn_ptft.yaml
timeout 200 python3 -m pytest -q -p no:cacheprovider tests/test_cuda_graph.py tests/test_rcnn_batched.py "tests/test_train_loop.py::test_cuda_graph_backbone_replays_every_step" 2>&1 | tail -15 | tee $OUT/pytest.txt
timeout ${BT:-380} python3 benchmarks/train.py --spec $S --iters 60 --warmup 10 --variants "${VARIANTS-torchvision_nms,no_cuda_graph,per_image_heads}" ${PROFILE---profile} --profile-variant "${PV-}" --out $OUT/train_bench.json > $OUT/bench.log 2>&1; echo rc=$?
grep -v '"kind"' $OUT/bench.log | tail -75
grep '"kind"' $OUT/bench.log | grep cuda_graph | tail -3
