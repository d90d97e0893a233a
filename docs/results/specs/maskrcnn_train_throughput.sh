#!/usr/bin/env bash
# Mask R-CNN training throughput (img/s) and peak memory of synthloop's loop against torchvision's
# reference loop on the same data, with the variants that turn one optimisation off each
# (benchmarks/train.py), optionally with a torch.profiler trace and the host-sync sites.
#   SPEC          training spec (default specs/maskrcnn_ptft.yaml; ResNet-50-FPN: specs/maskrcnn_r50_bench.yaml)
#   ITERS, WARMUP timed and warm-up iterations (default 60, 10)
#   VARIANTS      comma-separated benchmarks/train.py variants (default torchvision_nms,no_cuda_graph,per_image_heads)
#   PROFILE       the variant to profile ("" for synthloop's default loop); unset: no profile
#   SYNC_SITES    variants whose host syncs benchmarks/sync_sites.py lists first ("default" for none)
#   GPU_TESTS=1   run the CUDA-graph and batched-heads tests on the GPU first
#   BENCH_TIMEOUT seconds the benchmark may take (default 400)
# Writes $OUT/train_bench.json (+ bench.log, sync_<variant>.json, gpu.txt).
source "$(dirname "$0")/gpu_env.sh"
WORK=$PWD
spec=$WORK/${SPEC:-specs/maskrcnn_ptft.yaml}
gpu_info
cd "$REPO"
if [ "${GPU_TESTS:-0}" = 1 ]; then
  timeout 200 python3 -m pytest -q -p no:cacheprovider tests/test_cuda_graph.py tests/test_rcnn_batched.py \
    "tests/test_train_loop.py::test_cuda_graph_backbone_replays_every_step" 2>&1 | tail -15 | tee "$OUT/pytest.txt"
fi
for v in ${SYNC_SITES:-}; do
  [ "$v" = default ] && v=""
  timeout 120 python3 benchmarks/sync_sites.py --spec "$spec" --iters 12 --variant "$v" \
    --out "$OUT/sync_${v:-default}.json" 2> "$OUT/sync_${v:-default}.err" | head -40
done
prof=()
[ -n "${PROFILE+set}" ] && prof=(--profile --profile-variant "$PROFILE")
timeout "${BENCH_TIMEOUT:-400}" python3 benchmarks/train.py --spec "$spec" --iters "${ITERS:-60}" --warmup "${WARMUP:-10}" \
  --variants "${VARIANTS-torchvision_nms,no_cuda_graph,per_image_heads}" "${prof[@]}" \
  --out "$OUT/train_bench.json" > "$OUT/bench.log" 2>&1
echo "benchmark rc=$?"
grep -v '"kind"' "$OUT/bench.log" | tail -75
