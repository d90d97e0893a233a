#!/usr/bin/env bash
# People pose experiment: Keypoint R-CNN synthetic-only / real-only / synthetic pre-train -> real
# fine-tune, 2 seeds each, keypoint (OKS) AP and AP50 on a seeded by-image val split of
# ../shared/data/real/coco-person, with bootstrap intervals paired against real-only.
# Run from the repository root on a GPU machine with the `test` extra installed (anny, bpy).
#   FRAMES=2000 bash docs/results/specs/people_pose_gpu.sh WORK_DIR
# SYNTH=DIR uses frames rendered elsewhere (e.g. on a CPU render node) instead of rendering here;
# the six runs train in parallel on the one GPU (WORKERS data workers each), each stopped after
# TRAIN_LIMIT seconds if set (evaluation then uses the run's latest checkpoint).
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

for seed in $SEEDS; do
  python -m synthloop.cli evaluate "$WORK"/runs/real_s${seed} --data "$WORK"/real/val/annotations.json \
    --out "$WORK"/eval/s${seed} --bootstrap 1000 --bootstrap-iou keypoints --seed ${seed} \
    --compare "$WORK"/runs/synth_s${seed} --compare "$WORK"/runs/ptft_s${seed} --quiet
done
echo "reports: $WORK/eval/s*/report.json (keypoints AP/AP50; bootstrap: differences vs real-only)"
