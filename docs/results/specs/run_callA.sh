#!/usr/bin/env bash
# one device call: issue 7 round-0 model + random arm round 1, issue 8 prune/retrain, in parallel
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
cd .carry/gpu
S="python3 -m synthloop.cli"
arm() {  # arm NAME "PATHS": synthetic-only DetectNet on those dataset folders, stripped ckpt + real val eval
  sed -e "s#real_fraction: 0.5#real_fraction: 0.0#" -e "s#paths: \[\"../synth/\*\"\]#paths: [$2]#" -e "s#num_workers: 12#num_workers: 4#" specs/mix_base.yaml > specs/$1.yaml
  t0=$(date +%s)
  $S train specs/$1.yaml --out $1 --quiet > $1.log 2>&1 || tail -5 $1.log
  echo "$1 train $(( $(date +%s) - t0 )) s $(grep -c '"kind": "train"' $1.log) log steps" > $1.txt
  python3 strip.py $1/checkpoints/last.pt $OUT/$1.pt
  $S evaluate $1/checkpoints/last.pt --data real/val.json --out $OUT/$1_real_val.json --worst 0 --quiet > /dev/null 2>&1 || echo "eval $1 failed" >> $1.txt
}
for a in ${ARMS:-m0:\"../synth/*\" r1:\"../synth/*\",\"../rand1/*\"}; do
  arm ${a%%:*} "${a#*:}" &
done
[ -n "${PRUNE-1}" ] && (RITERS=${RITERS:-800} PTHS="${PTHS:-0.75 0.78 0.8}" bash run_prune.sh > prune.log 2>&1) &
wait
cat *.txt; grep -E "params|AP50|retrain|threshold" prune.log
