#!/usr/bin/env bash
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
cd .carry/gpu
S="python3 -m synthloop.cli"
for n in ${ARMS_EXIST:-}; do :; done
arm() {
  sed -e "s#real_fraction: 0.5#real_fraction: 0.0#" -e "s#paths: \[\"../synth/\*\"\]#paths: [$2]#" -e "s#num_workers: 12#num_workers: 4#" specs/mix_base.yaml > specs/$1.yaml
  t0=$(date +%s)
  $S train specs/$1.yaml --out $1 --quiet > $1.log 2>&1 || tail -5 $1.log
  echo "$1 train $(( $(date +%s) - t0 )) s" > $1.txt
  python3 strip.py $1/checkpoints/last.pt $OUT/$1.pt
  $S evaluate $1/checkpoints/last.pt --data real/val.json --out $OUT/$1_real_val.json --worst 0 --quiet > /dev/null 2>&1 || echo "eval $1 failed" >> $1.txt
}
for a in $ARMS; do arm ${a%%:*} "${a#*:}" & done
wait
cat *.txt; ls -la $OUT
