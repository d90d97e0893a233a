#!/usr/bin/env bash
# People pose experiment: Keypoint R-CNN synthetic-only / real-only / synthetic pre-train -> real
# fine-tune, 2 seeds each, keypoint (OKS) AP and AP50 on a seeded by-image val split of
# ../shared/data/real/coco-person, with bootstrap intervals paired against real-only.
# Run from the repository root on a GPU machine with the `test` extra installed (anny, bpy).
#   FRAMES=2000 bash docs/results/specs/people_pose_gpu.sh WORK_DIR
# SYNTH=DIR uses frames rendered elsewhere (e.g. on a CPU render node) instead of rendering here.
# Stage 1 trains real-only and synthetic-only (SYNTH_ITERS iterations, default 2000) in parallel
# on the one GPU; stage 2 fine-tunes each seed's synthetic model on the real photos
# (keypointrcnn_ptft.yaml: model.init_from), so the synthetic-only arm is the fine-tuned arm's
# starting point. WORKERS data workers per run; TRAIN_LIMIT seconds stops a run (evaluation then
# uses its latest checkpoint). BOOT resamples (default 1000; 0 to bootstrap elsewhere from the
# returned eval/ folder).
# Resumable: every run is trained with --resume and marked RUN.done when it finishes, so running
# the script again on the same WORK_DIR (e.g. a second call after TRAIN_LIMIT stopped the synthetic
# runs) continues the unfinished runs, starts a fine-tune only from a finished synthetic run, and
# evaluates each finished run once.
# ARMS="real" or ARMS="synth" (synthetic, then its fine-tune) trains one side only (default both),
# e.g. to start the real-only runs while the renders are still on their way to the machine.
set -euo pipefail
WORK=${1:?usage: people_pose_gpu.sh WORK_DIR}
FRAMES=${FRAMES:-2000}
ARMS=${ARMS:-"real synth"}
SEEDS=${SEEDS:-"0 1"}
SPECS=$(cd "$(dirname "$0")" && pwd)
REAL_JSON=${REAL_JSON:-../shared/data/real/coco-person/person_keypoints.json}
mkdir -p "$WORK"/specs "$WORK"/runs "$WORK"/eval

[ -e "$WORK"/real/val/annotations.json ] ||
  python "$SPECS"/people_pose_split.py "$REAL_JSON" "$WORK"/real --val-fraction 0.3 --seed 0
if [[ " $ARMS " != *" synth "* ]]; then
  :
elif [ -n "${SYNTH:-}" ]; then
  ln -sfn "$(cd "$SYNTH" && pwd)" "$WORK"/synth
else
  python -m synthloop.cli generate --recipe people --frames "$FRAMES" --seed 0 --out "$WORK"/synth --quiet
fi

train_arm() {  # ARM SEED: write the seed's spec from keypointrcnn_ARM.yaml and train (or resume) it
  local arm=$1 seed=$2 spec="$WORK"/specs/${1}_s${2}.yaml run="$WORK"/runs/${1}_s${2} rc=0
  [ -e "$run".done ] && return 0
  sed -e "s/^seed: 0$/seed: ${seed}/" -e "s/^num_workers: 12$/num_workers: ${WORKERS:-12}/" \
    -e "s/^iterations: 2000$/iterations: ${SYNTH_ITERS:-2000}/" -e "s#runs/synth_s0/#runs/synth_s${seed}/#" \
    "$SPECS"/keypointrcnn_${arm}.yaml > "$spec"
  ${TRAIN_LIMIT:+timeout $TRAIN_LIMIT} python -m synthloop.cli train "$spec" --out "$run" --resume \
    --quiet >> "$run".log 2>&1 || rc=$?
  if [ "$rc" -eq 0 ]; then touch "$run".done; else echo "${arm}_s${seed}: train exited $rc (run again to resume)"; fi
  return "$rc"
}

for seed in $SEEDS; do
  [[ " $ARMS " == *" real "* ]] && train_arm real "$seed" &
  [[ " $ARMS " == *" synth "* ]] && (train_arm synth "$seed" && train_arm ptft "$seed") &
done
wait

# each model (its last checkpoint: no checkpoint is picked on the val split) on the real val split
# (report.json + detections.json), the six at once
for arm in real synth ptft; do
  for seed in $SEEDS; do
    [ -e "$WORK"/runs/${arm}_s${seed}.done ] && [ ! -e "$WORK"/eval/${arm}_s${seed}/report.json ] || continue
    python -m synthloop.cli evaluate "$WORK"/runs/${arm}_s${seed}/checkpoints/last.pt --data "$WORK"/real/val/annotations.json \
      --out "$WORK"/eval/${arm}_s${seed} --quiet > "$WORK"/eval/${arm}_s${seed}.log 2>&1 &
  done
done
wait
# keypoint (OKS) AP/AP50 per arm: mean over seeds, bootstrap over val images, paired vs real-only
# (BOOT=0 skips it here; run the same command where the eval/ folder lands)
if [ "${BOOT:-1000}" -gt 0 ] && [ "$(ls "$WORK"/eval/*/report.json | wc -l)" -eq $((3 * $(echo $SEEDS | wc -w))) ]; then
  python "$SPECS"/../../../benchmarks/arm_compare.py --iou keypoints --data "$WORK"/real/val/annotations.json \
    --arm real="$WORK/eval/real_s*/detections.json" --arm synth="$WORK/eval/synth_s*/detections.json" \
    --arm ptft="$WORK/eval/ptft_s*/detections.json" --resamples "${BOOT:-1000}" --out "$WORK"/eval/arms.json
fi
echo "reports: $WORK/eval/*/report.json, $WORK/eval/arms.json (keypoint AP/AP50 per arm; differences vs real-only)"
