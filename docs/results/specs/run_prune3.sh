#!/usr/bin/env bash
# issue 8, third call: retrain two 0.30x prunings of the 1000-iteration base (carried as base.pt,
# pruned here on the CPU with `synthloop prune base.pt --target-ratio 0.3 [--allocation uniform]`)
# for RITERS iterations, in parallel:
#   th30     TLT threshold allocation (-pth 0.760), lr 1e-3
#   un30     uniform allocation (29 % of every group), lr 1e-3
#   un30_lr  uniform allocation, lr 5e-4
# As run second: ARMS='un30_lr25:un30.pt:0.00025 un30_lr10:un30.pt:0.0001'
# Not run yet (no device time left): an optional 4th field distills from the carried base.pt with
# that weight, e.g. ARMS='un30_kd1:un30.pt:0.0005:1.0 un30_kd3:un30.pt:0.0005:3.0'
# Session 6: a 6th field freezes those backbone blocks (TLT numbering: 0 stem, 1-7 stages), e.g.
# ARMS='frz3_s0:un30.pt:0.0005::0:0,1,2,3 ...' (run_s6a.sh).
# Run from the repository root.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
cd .carry/gpu
S="python3 -m synthloop.cli"
R=${RITERS:-2500}; W=${WORKERS:-5}
arm() {  # arm NAME PRUNED LR [DISTILL_WEIGHT] [SEED] [FREEZE_BLOCKS, e.g. 0,1,2,3]
  sed -e "s#paths: \[../synth\]#paths: [\"../synth/*\"]#" -e "s#^iterations: 250#iterations: $R#" \
      -e "s#^checkpoint_interval: 250#checkpoint_interval: $R#" -e "s#num_workers: 12#num_workers: $W#" \
      -e "s#lr: 0.001,#lr: $3,#" -e "s#weights: package#weights: null#" \
      -e "s#^model: {family: detectnet_v2,#model: {family: detectnet_v2, load_graph: ../$2,#" \
      specs/prune_base.yaml > specs/$1.yaml
  [ -n "${4-}" ] && echo "distill: {teacher: ../base.pt, weight: $4}" >> specs/$1.yaml
  [ -n "${5-}" ] && echo "seed: $5" >> specs/$1.yaml
  [ -n "${6-}" ] && sed -i "s#weights: null}#weights: null, freeze_blocks: [$6]}#" specs/$1.yaml
  t0=$(date +%s)
  $S train specs/$1.yaml --out $1 --quiet > $1.log 2>&1 || tail -5 $1.log
  echo "$1 train $(( $(date +%s) - t0 )) s" >> $OUT/times.txt
  $S evaluate $1/checkpoints/last.pt --data real/val.json --out $OUT/pr3_$1.json --worst 0 --quiet > /dev/null 2>&1 || echo "eval $1 failed"
  python3 strip.py $1/checkpoints/last.pt $OUT/$1.pt
}
for a in ${ARMS:-th30:th30.pt:0.001 un30:un30.pt:0.001 un30_lr:un30.pt:0.0005}; do
  IFS=: read -r name pruned lr kd seed freeze <<< "$a"; arm "$name" "$pruned" "$lr" "$kd" "$seed" "$freeze" &
done
wait
cp specs/un30.yaml $OUT/
python3 - <<'PY' | tee -a $OUT/times.txt
import json, glob, os
for f in sorted(glob.glob(os.environ["OUT"] + "/pr3_*.json")):
    r = json.load(open(f)); s = r["coco"]["bbox"]["stats"]
    print(os.path.basename(f), "AP", round(s["AP"], 4), "AP50", round(s["AP50"], 4), "VOC mAP", round(r["voc"]["mAP"], 4))
PY
cat $OUT/times.txt
