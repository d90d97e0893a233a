#!/usr/bin/env bash
# GPU run for issue 8 (prune -> retrain, DetectNet_v2) and issue 5's training benchmark
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
cd .carry/gpu
S="python3 -m synthloop.cli"
$S train specs/prune_base.yaml --out pbase --quiet > pbase.log 2>&1 || tail -5 pbase.log
ck=pbase/checkpoints/last.pt
: > $OUT/prune.txt
$S evaluate $ck --data real/val.json --out pr_eval_0base.json --worst 0 --quiet > /dev/null 2>&1 || echo "eval base failed"
for t in ${PTHS:-0.8}; do
  $S prune $ck --out pruned_$t.pt -pth $t -nf 16 -pg 8 | tee -a $OUT/prune.txt
  $S evaluate pruned_$t.pt --data real/val.json --out pr_eval_1pruned_$t.json --worst 0 --quiet > /dev/null 2>&1 || echo "eval pruned failed"
  sed -e "s#^iterations: 250#iterations: 400#" -e "s#lr: 0.001#lr: 0.0003#" specs/prune_base.yaml > specs/retrain_$t.yaml
  sed -i "s#^model: {family: detectnet_v2,#model: {family: detectnet_v2, load_graph: ../pruned_$t.pt,#" specs/retrain_$t.yaml
  $S train specs/retrain_$t.yaml --out retrain_$t --quiet > retrain_$t.log 2>&1 || tail -5 retrain_$t.log
  $S evaluate retrain_$t --data real/val.json --out pr_eval_2retrained_$t.json --worst 0 --quiet > /dev/null 2>&1 || echo "eval retrained failed"
done
python3 - <<'PY' | tee -a $OUT/prune.txt
import json, glob
for f in sorted(glob.glob("pr_eval_*.json")):
    r = json.load(open(f)); s = r["coco"]["bbox"]["stats"]
    print(f, "AP", round(s["AP"], 4), "AP50", round(s["AP50"], 4), "VOC mAP", round(r["voc"]["mAP"], 4))
PY
cd ../..
timeout 300 python3 benchmarks/train.py --spec .carry/gpu/specs/maskrcnn_ptft.yaml --iters 40 --warmup 8 --out $OUT/train_bench.json > bench.log 2>&1; grep -v '"kind"' bench.log | tail -45
