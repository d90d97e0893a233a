#!/usr/bin/env bash
# Real val AP of synthetic-only DetectNet_v2 models, one per (arm, seed), trained in parallel on one
# GPU: each ARM is NAME=GLOB[,GLOB...] over the carried dataset folders (.carry/gpu/data/*).
#   ARMS="bundled=data/bundled_100 fitted=data/fitted_100" SEEDS="0 1 2" ITERS=500 \
#     bash docs/results/specs/synthetic_only_arms.sh
# Writes $OUT/results.tar: ARM_sSEED/{report.json,detections.json} (synthloop evaluate on real/val.json,
# BOOT (default 2000) bootstrap resamples over the val images, 0 for none; the detections serve paired
# comparisons of arms afterwards, benchmarks/arm_compare.py), and
# $OUT/ARM_sSEED.pt (weights only, fp16) for the seeds in KEEP_CKPT (default 0), for mining on the CPU.
set -uo pipefail
[ -n "${LOCAL:-}" ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
here=$PWD
cd .carry/gpu
PY=${PY:-python3}; S="$PY -m synthloop.cli"
one() {  # one ARM GLOBS SEED
  local run=$1_s$3 globs
  globs=$(echo "$2" | sed 's/,/", "/g')
  sed -e "s#DATASETS#\"$globs\"#" -e "s#^seed: SEED#seed: $3#" -e "s#^iterations: 500#iterations: ${ITERS:-500}#" \
      -e "s#^checkpoint_interval: 500#checkpoint_interval: ${ITERS:-500}#" \
      "$here/docs/results/specs/synthetic_only.yaml" > $run.yaml
  t0=$(date +%s)
  $S train $run.yaml --out runs/$run --quiet > $run.log 2>&1 || { tail -5 $run.log; return; }
  echo "$run train $(( $(date +%s) - t0 )) s" | tee -a $OUT/times.txt
  $S evaluate runs/$run/checkpoints/last.pt --data real/val.json --out res/$run --worst 0 \
     --bootstrap ${BOOT:-2000} --quiet > $run.eval.log 2>&1 || tail -3 $run.eval.log
  case " ${KEEP_CKPT:-0} " in *" $3 "*) $PY "$here/docs/results/specs/strip.py" runs/$run/checkpoints/last.pt $OUT/$run.pt ;; esac
}
for arm in ${ARMS}; do
  for s in ${SEEDS:-0 1 2}; do one "${arm%%=*}" "${arm#*=}" "$s" & done
done
wait
tar cf $OUT/results.tar res
$PY - <<'PY' | tee -a $OUT/times.txt
import glob, json, os
for f in sorted(glob.glob("res/*/report.json")):
    r = json.load(open(f)); s = r["coco"]["bbox"]["stats"]
    print(f.split("/")[1], "AP %.4f AP50 %.4f" % (s["AP"], s["AP50"]))
PY
