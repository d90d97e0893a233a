#!/usr/bin/env bash
# issue 7 last round: random +80, targeted +40/+80 (seed 0), plus seed 1 of the goal pair; ckpts back
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
cd .carry/gpu
S="python3 -m synthloop.cli"
arm() {
  sed -e "s#real_fraction: 0.5#real_fraction: 0.0#" -e "s#paths: \[\"../synth/\*\"\]#paths: [$2]#" -e "s#num_workers: 12#num_workers: 3#" specs/mix_base.yaml > specs/$1.yaml
  case $1 in *_s1) echo "seed: 1" >> specs/$1.yaml;; esac
  t0=$(date +%s)
  $S train specs/$1.yaml --out $1 --quiet > $1.log 2>&1 || tail -5 $1.log
  echo "$1 train $(( $(date +%s) - t0 )) s" > $1.txt
  python3 strip.py $1/checkpoints/last.pt $OUT/$1.pt
}
B='"../synth/*"'; R1='"../rand1/*"'; R2='"../rand2/*"'; T1='"../targ1/*"'; T2='"../targ2/*"'
arm m0_s1 "$B" & arm r1_s1 "$B,$R1" & arm t2_s1 "$B,$T1,$T2" &
wait
cat *.txt; tar czf $OUT/logs.tgz *.log specs/*.yaml
