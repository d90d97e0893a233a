#!/usr/bin/env bash
# issue 8: train the blend r=1 detector, prune at several thresholds, retrain the one at <= 0.3x params
set -uo pipefail
[ -d /tmp/site/pydantic ] || { echo "install .whl into /tmp/site first (run_callA.sh does)"; exit 1; }
export PYTHONPATH=${PYTHONPATH:-/tmp/site:$PWD} PYTHONUNBUFFERED=1
cd "$(dirname "$0")"
S="python3 -m synthloop.cli"
sed -e "s#real_fraction: 0.5#real_fraction: 1.0#" specs/mix_base.yaml > specs/base.yaml
t0=$(date +%s)
$S train specs/base.yaml --out base --quiet > base.log 2>&1 || tail -5 base.log
echo "base train $(( $(date +%s) - t0 )) s" | tee $OUT/prune.txt
ck=base/checkpoints/last.pt
python3 strip.py $ck $OUT/base_detectnet.pt
$S evaluate $ck --data real/val.json --out pr_eval_0base.json --worst 0 --quiet > /dev/null 2>&1 || echo "eval base failed"
best=""
for t in ${PTHS:-0.5 0.6 0.7}; do
  $S prune $ck --out pruned_$t.pt -pth $t -nf 16 -pg 8 > prune_$t.txt 2>&1; sed "s/^/pth $t: /" prune_$t.txt | tee -a $OUT/prune.txt
  r=$(grep -o "params.*ratio [0-9.]*" prune_$t.txt | grep -o "[0-9.]*$")
  if [ -z "$best" ] && python3 -c "import sys; sys.exit(0 if float('$r') <= 0.3 else 1)"; then best=$t; fi
done
echo "retrain threshold: $best" | tee -a $OUT/prune.txt
t=$best
$S evaluate pruned_$t.pt --data real/val.json --out pr_eval_1pruned_$t.json --worst 0 --quiet > /dev/null 2>&1 || echo "eval pruned failed"
sed -e "s#^iterations: 250#iterations: ${RITERS:-1000}#" -e "s#^checkpoint_interval: 250#checkpoint_interval: ${RITERS:-1000}#" specs/base.yaml > specs/retrain_$t.yaml
sed -i "s#^model: {family: detectnet_v2,#model: {family: detectnet_v2, load_graph: ../pruned_$t.pt,#" specs/retrain_$t.yaml
cp specs/retrain_$t.yaml $OUT/
t0=$(date +%s)
$S train specs/retrain_$t.yaml --out retrain_$t --quiet > retrain_$t.log 2>&1 || tail -5 retrain_$t.log
echo "retrain $(( $(date +%s) - t0 )) s" | tee -a $OUT/prune.txt
$S evaluate retrain_$t --data real/val.json --out pr_eval_2retrained_$t.json --worst 0 --quiet > /dev/null 2>&1 || echo "eval retrained failed"
python3 - <<'PY' | tee -a $OUT/prune.txt
import json, glob
for f in sorted(glob.glob("pr_eval_*.json")):
    r = json.load(open(f)); s = r["coco"]["bbox"]["stats"]
    print(f, "AP", round(s["AP"], 4), "AP50", round(s["AP50"], 4), "VOC mAP", round(r["voc"]["mAP"], 4))
PY
cp pr_eval_*.json $OUT/
