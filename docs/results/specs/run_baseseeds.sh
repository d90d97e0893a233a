#!/usr/bin/env bash
# issue 8: seed spread of the unpruned base (the 1000-iteration blend r=1 detector from ImageNet
# weights, as run_prune2.sh's "base"), seeds given in SEEDS, trained in parallel.
# Run from the repository root.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
cd .carry/gpu
S="python3 -m synthloop.cli"
N=${ITERS:-1000}; W=${WORKERS:-3}
one() {
  sed -e "s#paths: \[../synth\]#paths: [\"../synth/*\"]#" -e "s#^iterations: 250#iterations: $N#" \
      -e "s#^checkpoint_interval: 250#checkpoint_interval: $N#" -e "s#num_workers: 12#num_workers: $W#" \
      specs/prune_base.yaml > specs/base_s$1.yaml
  echo "seed: $1" >> specs/base_s$1.yaml
  t0=$(date +%s)
  $S train specs/base_s$1.yaml --out base_s$1 --quiet > base_s$1.log 2>&1 || tail -5 base_s$1.log
  echo "base_s$1 train $(( $(date +%s) - t0 )) s" >> $OUT/times.txt
  $S evaluate base_s$1/checkpoints/last.pt --data real/val.json --out $OUT/pr4_base_s$1.json --worst 0 --quiet > /dev/null 2>&1 || echo "eval $1 failed"
}
for s in ${SEEDS:-1 2 3 4}; do one $s & done
wait
python3 - <<'PY' | tee -a $OUT/times.txt
import json, glob, os
for f in sorted(glob.glob(os.environ["OUT"] + "/pr4_*.json")):
    r = json.load(open(f)); s = r["coco"]["bbox"]["stats"]
    print(os.path.basename(f), "AP", round(s["AP"], 4), "AP50", round(s["AP50"], 4), "VOC mAP", round(r["voc"]["mAP"], 4))
PY
