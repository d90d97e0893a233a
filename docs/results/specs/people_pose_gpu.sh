#!/usr/bin/env bash
# People pose experiment: Keypoint R-CNN synthetic-only / real-only / synthetic pre-train -> real
# fine-tune, 2 seeds each, keypoint (OKS) AP and AP50 on a seeded by-image val split of
# ../shared/data/real/coco-person, with bootstrap intervals paired against real-only.
# Run from the repository root on a GPU machine with the `test` extra installed (anny, bpy).
#   FRAMES=2000 bash docs/results/specs/people_pose_gpu.sh WORK_DIR
# SYNTH=DIR uses frames rendered elsewhere (e.g. on a CPU render node) instead of rendering here;
# the six runs train in parallel on the one GPU (WORKERS data workers each), each stopped after
# TRAIN_LIMIT seconds if set (evaluation then uses the run's latest checkpoint). BOOT resamples
# (default 1000; 0 to bootstrap elsewhere from the returned eval/ folder).
set -euo pipefail
WORK=${1:?usage: people_pose_gpu.sh WORK_DIR}
FRAMES=${FRAMES:-2000}
SEEDS=${SEEDS:-"0 1"}
SPECS=$(cd "$(dirname "$0")" && pwd)
REAL_JSON=${REAL_JSON:-../shared/data/real/coco-person/person_keypoints.json}
mkdir -p "$WORK"/specs "$WORK"/runs "$WORK"/eval

python "$SPECS"/people_pose_split.py "$REAL_JSON" "$WORK"/real --val-fraction 0.3 --seed 0
if [ -n "${SYNTH:-}" ]; then
  ln -sfn "$(cd "$SYNTH" && pwd)" "$WORK"/synth
else
  python -m synthloop.cli generate --recipe people --frames "$FRAMES" --seed 0 --out "$WORK"/synth --quiet
fi

for arm in real synth ptft; do
  for seed in $SEEDS; do
    spec="$WORK"/specs/${arm}_s${seed}.yaml
    sed -e "s/^seed: 0$/seed: ${seed}/" -e "s/^num_workers: 12$/num_workers: ${WORKERS:-12}/" \
      "$SPECS"/keypointrcnn_${arm}.yaml > "$spec"
    ${TRAIN_LIMIT:+timeout $TRAIN_LIMIT} python -m synthloop.cli train "$spec" --out "$WORK"/runs/${arm}_s${seed} \
      --quiet > "$WORK"/runs/${arm}_s${seed}.log 2>&1 &
  done
done
wait

# each model (its last checkpoint: no checkpoint is picked on the val split) on the real val split
# (report.json + detections.json), the six at once
for arm in real synth ptft; do
  for seed in $SEEDS; do
    python -m synthloop.cli evaluate "$WORK"/runs/${arm}_s${seed}/checkpoints/last.pt --data "$WORK"/real/val/annotations.json \
      --out "$WORK"/eval/${arm}_s${seed} --quiet > "$WORK"/eval/${arm}_s${seed}.log 2>&1 &
  done
done
wait
# keypoint (OKS) AP/AP50 per arm: mean over seeds, bootstrap over val images, paired vs real-only
# (BOOT=0 skips it here; run the same command where the eval/ folder lands)
if [ "${BOOT:-1000}" -gt 0 ]; then
  python "$SPECS"/../../../benchmarks/arm_compare.py --iou keypoints --data "$WORK"/real/val/annotations.json \
    --arm real="$WORK/eval/real_s*/detections.json" --arm synth="$WORK/eval/synth_s*/detections.json" \
    --arm ptft="$WORK/eval/ptft_s*/detections.json" --resamples "${BOOT:-1000}" --out "$WORK"/eval/arms.json
fi
echo "reports: $WORK/eval/*/report.json, $WORK/eval/arms.json (keypoint AP/AP50 per arm; differences vs real-only)"
