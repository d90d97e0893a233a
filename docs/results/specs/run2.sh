#!/usr/bin/env bash
# GPU run for issue 6 (mixing experiment, DetectNet_v2) and issue 8 (prune -> retrain)
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 MPLBACKEND=Agg
cd .carry/gpu
S="python3 -m synthloop.cli"
# resume a partial experiment carried back from an earlier call
[ -f mixprev.tgz ] && tar xzf mixprev.tgz
t0=$(date +%s)
timeout ${MIX_BUDGET:-420} $S mix run specs/mix.yaml --out mixout --quiet --no-report > mix.log 2>&1; echo "mix rc=$? wall $(( $(date +%s) - t0 )) s"
grep -E '"status"|error' mix.log | tail -20
$S mix report mixout > /dev/null 2>&1
cp mixout/results.json mixout/summary.md mixout/report.html $OUT/ 2>/dev/null
tar czf $OUT/mixstate.tgz --exclude='*.pt' --exclude='tensorboard' mixout
cat mixout/summary.md | head -40
# issue 8: prune the blend r=1 seed-0 detector, evaluate before / after pruning / after retraining
if [ -n "${PRUNE-1}" ] && [ -f mixout/runs/blend-r1-s0/train/checkpoints/last.pt ]; then
  ck=mixout/runs/blend-r1-s0/train/checkpoints/last.pt
  : > $OUT/prune.txt
  $S evaluate $ck --data real/val.json --out pr_eval_base.json --worst 0 --quiet > /dev/null 2>&1
  for t in ${PTHS:-0.8}; do
    $S prune $ck --out pruned_$t.pt -pth $t -nf 16 -pg 8 | tee -a $OUT/prune.txt
    $S evaluate pruned_$t.pt --data real/val.json --out pr_eval_pruned_$t.json --worst 0 --quiet > /dev/null 2>&1 || echo "eval pruned failed"
    sed -e "s#^iterations: 250#iterations: 400#" -e "s#lr: 0.001#lr: 0.0003#" -e "s#real_fraction: 0.5#real_fraction: 1.0#" specs/mix_base.yaml > specs/retrain_$t.yaml
    sed -i "s#^model: {family: detectnet_v2,#model: {family: detectnet_v2, load_graph: ../pruned_$t.pt,#" specs/retrain_$t.yaml
    $S train specs/retrain_$t.yaml --out retrain_$t --quiet > retrain_$t.log 2>&1 || tail -5 retrain_$t.log
    $S evaluate retrain_$t --data real/val.json --out pr_eval_retrained_$t.json --worst 0 --quiet > /dev/null 2>&1 || echo "eval retrained failed"
  done
  python3 - <<'PY' | tee -a $OUT/prune.txt
import json, glob
for f in sorted(glob.glob("pr_eval_*.json")):
    r = json.load(open(f)); s = r["coco"]["bbox"]["stats"]
    print(f, "AP", round(s["AP"], 4), "AP50", round(s["AP50"], 4), "VOC mAP", round(r["voc"]["mAP"], 4))
PY
fi
cd ../..
if [ -n "${BENCH-}" ]; then
  timeout 240 python3 benchmarks/train.py --spec .carry/gpu/specs/maskrcnn_ptft.yaml --iters 60 --warmup 10 --out $OUT/train_bench.json > bench.log 2>&1; grep -v '"kind"' bench.log | tail -30
fi
