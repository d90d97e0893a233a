#!/usr/bin/env bash
# issue 7 rounds: each named arm trains in parallel, fp16 weight copies come back.
# As run: ARMS='r2 t1 t2 r2_s1 t1_s1' (then the ResNet-50 benchmark), and
# ARMS='m0_s1 r1_s1 t2_s1' BENCH= (no benchmark)
# (real_fraction is 0 here; to fit the 64 MiB carry the real/ folder stayed behind and its line was
# deleted from the carried specs/mix_base.yaml, with the instance maps and the records' scene dicts)
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
declare -A DATA=([m0]="$B" [r1]="$B,$R1" [r2]="$B,$R1,$R2" [t1]="$B,$T1" [t2]="$B,$T1,$T2")
for a in ${ARMS:-r2 t1 t2 r2_s1 t1_s1}; do arm $a "${DATA[${a%_s1}]}" & done
wait
cat *.txt; tar czf $OUT/logs.tgz *.log specs/*.yaml
[ -n "${BENCH-1}" ] || exit 0
cd ../..
# issue 5 on a GPU-bound configuration: torchvision's usual ResNet-50-FPN Mask R-CNN (random init in both loops)
timeout ${BT:-170} python3 benchmarks/train.py --spec .carry/gpu/specs/maskrcnn_r50_bench.yaml --iters 40 --warmup 10 --variants "" --out $OUT/train_bench_r50.json > $OUT/bench_r50.log 2>&1; echo "bench rc=$?"
grep -v '"kind"' $OUT/bench_r50.log | tail -30
