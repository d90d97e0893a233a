#!/usr/bin/env bash
# Pruning DetectNet_v2 (EfficientNet-Lite0, blend of renders and fruits-nuts train, specs/prune_base.yaml)
# and retraining it: AP50 on the fruits-nuts val photos before pruning, after, and after retraining.
# STEP picks the part of the experiment (each writes evaluation reports $OUT/<name>.json, the
# retrained weights $OUT/<name>.pt without optimizer state, wall times $OUT/times.txt, a summary):
#   thresholds  train the base ITERS iterations; prune it at each TLT threshold in PTHS
#               (-nf 16 -pg 8); retrain the first one at <= 0.3x parameters RITERS iterations
#               (every one with RETRAIN_ALL=1)
#   schedules   TLT's protocol: base ITERS iterations, then in parallel one-shot (prune to 0.3x,
#               retrain ITERS) and iterative (0.55x, retrain ITERS/2, 0.3x, retrain ITERS/2)
#   base_seeds  the unpruned base for each seed in SEEDS, trained in parallel
#   arms        retrain pruned graphs (made on the CPU beforehand with `synthloop prune base.pt ...`,
#               in the work folder with base.pt) in parallel, one per ARMS entry
#               NAME:PRUNED.pt:LR[:DISTILL_WEIGHT[:SEED[:FREEZE_BLOCKS]]], RITERS iterations each
# Other settings: ITERS (default 1000), RITERS (2500), WORKERS (data loader workers per training, 5).
source "$(dirname "$0")/gpu_env.sh"
N=${ITERS:-1000}; R=${RITERS:-2500}; W=${WORKERS:-5}

prune() {  # prune SRC DST ARGS...: on the CPU with few threads (many threads next to training crawl)
  local src=$1 dst=$2; shift 2
  local t0; t0=$(date +%s)
  OMP_NUM_THREADS=2 $S prune "$src" --out "$dst" -nf 16 -pg 8 "$@" 2>&1 | grep -v -i warn > "${dst%.pt}.txt"
  echo "prune $dst $(( $(date +%s) - t0 )) s" >> "$OUT/times.txt"
}
ratio() { grep -o "params.*ratio [0-9.]*" "$1" | grep -o "[0-9.]*$"; }
params_before() { grep -o "params: [0-9,]*" "$1" | tr -d , | awk '{print $2}'; }
params_after() { grep -o "params: [0-9,]* -> [0-9,]*" "$1" | tr -d , | awk '{print $4}'; }
base() {  # base NAME [SEED]: the unpruned detector, N iterations, evaluated
  spec_from prune_base "$1" "$N" 12 "" "" "" "${2-}"; train "$1"
  evaluate_val "$1/checkpoints/last.pt" "$OUT/$1.json"
}
retrain() {  # retrain NAME PRUNED ITERS [LR [DISTILL [SEED [FREEZE]]]]
  spec_from prune_base "$1" "$3" "$W" "$2" "${4-}" "${5-}" "${6-}" "${7-}"; train "$1"
  evaluate_val "$1/checkpoints/last.pt" "$OUT/$1.json"
  strip_ckpt "$1/checkpoints/last.pt" "$OUT/$1.pt"
}

case ${STEP:?set STEP to thresholds, schedules, base_seeds or arms} in
  thresholds)
    base base; strip_ckpt base/checkpoints/last.pt "$OUT/base.pt"
    chosen=""
    for t in ${PTHS:-0.75 0.78 0.8}; do
      prune base/checkpoints/last.pt "pruned_$t.pt" -pth "$t"; sed "s/^/pth $t: /" "pruned_$t.txt" | tee -a "$OUT/prune.txt"
      evaluate_val "pruned_$t.pt" "$OUT/pruned_$t.json"
      if [ "${RETRAIN_ALL:-0}" = 1 ] || { [ -z "$chosen" ] && python3 -c "import sys; sys.exit(float('$(ratio "pruned_$t.txt")') > 0.3)"; }; then
        chosen=$t; retrain "retrain_$t" "pruned_$t.pt" "$R"
      fi
    done ;;
  schedules)
    base base; strip_ckpt base/checkpoints/last.pt "$OUT/base.pt"
    oneshot() {
      prune base/checkpoints/last.pt os_pruned.pt --target-ratio 0.3; evaluate_val os_pruned.pt "$OUT/os_pruned.json"
      retrain os_retrain os_pruned.pt "$N"
    }
    iterative() {
      prune base/checkpoints/last.pt it_pruned1.pt --target-ratio 0.55; evaluate_val it_pruned1.pt "$OUT/it_pruned1.json"
      retrain it_retrain1 it_pruned1.pt $(( N / 2 ))
      rel=$(python3 -c "print(min(1.0, 0.3 * $(params_before it_pruned1.txt) / $(params_after it_pruned1.txt)))")
      prune it_retrain1/checkpoints/last.pt it_pruned2.pt --target-ratio "$rel"; evaluate_val it_pruned2.pt "$OUT/it_pruned2.json"
      retrain it_retrain2 it_pruned2.pt $(( N / 2 ))
    }
    oneshot > oneshot.log 2>&1 & iterative > iterative.log 2>&1 &
    wait
    cat ./*pruned*.txt | tee -a "$OUT/prune.txt" ;;
  base_seeds)
    for s in ${SEEDS:-1 2 3 4}; do base "base_s$s" "$s" & done
    wait ;;
  arms)
    for a in ${ARMS:?set ARMS, e.g. ARMS="un30:un30.pt:0.0005"}; do
      IFS=: read -r name pruned lr kd seed freeze <<< "$a"
      retrain "$name" "$pruned" "$R" "$lr" "$kd" "$seed" "$freeze" &
    done
    wait ;;
  *) echo "unknown STEP $STEP" >&2; exit 2 ;;
esac
cat "$OUT/times.txt"
print_ap "$OUT"/*.json | tee "$OUT/summary.txt"
