#!/usr/bin/env bash
# Real val AP of synthetic-only DetectNet_v2 models, one per (arm, seed), trained in parallel on one
# GPU: each ARM is NAME=GLOB[,GLOB...] over dataset folders of the work folder (see gpu_env.sh).
#   ARMS="bundled=data/bundled_100 fitted=data/fitted_100" SEEDS="0 1 2" ITERS=500 \
#     bash docs/results/specs/synthetic_only_arms.sh
# Writes $OUT/results.tar: ARM_sSEED/{report.json,detections.json} (synthloop evaluate on real/val.json,
# BOOT (default 2000) bootstrap resamples over the val images, 0 for none; the detections serve paired
# comparisons of arms afterwards, benchmarks/arm_compare.py), and
# $OUT/ARM_sSEED.pt (weights only, fp16) for the seeds in KEEP_CKPT (default 0), for mining on the CPU.
source "$(dirname "$0")/gpu_env.sh"
one() {  # one ARM GLOBS SEED
  local run=$1_s$3 globs
  globs=$(echo "$2" | sed 's/,/", "/g')
  sed -e "s#DATASETS#\"$globs\"#" -e "s#^seed: SEED#seed: $3#" -e "s#^iterations: 500#iterations: ${ITERS:-500}#" \
      -e "s#^checkpoint_interval: 500#checkpoint_interval: ${ITERS:-500}#" \
      "$SPECS_DIR/synthetic_only.yaml" > "$run.yaml"
  local t0; t0=$(date +%s)
  $S train "$run.yaml" --out "runs/$run" --quiet > "$run.log" 2>&1 || { tail -5 "$run.log"; return; }
  echo "$run train $(( $(date +%s) - t0 )) s" | tee -a "$OUT/times.txt"
  $S evaluate "runs/$run/checkpoints/last.pt" --data real/val.json --out "res/$run" --worst 0 \
     --bootstrap "${BOOT:-2000}" --quiet > "$run.eval.log" 2>&1 || tail -3 "$run.eval.log"
  case " ${KEEP_CKPT:-0} " in *" $3 "*) strip_ckpt "runs/$run/checkpoints/last.pt" "$OUT/$run.pt" ;; esac
}
for arm in ${ARMS:?set ARMS, e.g. ARMS="bundled=data/bundled_100"}; do
  for s in ${SEEDS:-0 1 2}; do one "${arm%%=*}" "${arm#*=}" "$s" & done
done
wait
tar cf "$OUT/results.tar" res
print_ap res/*/report.json | tee -a "$OUT/times.txt"
