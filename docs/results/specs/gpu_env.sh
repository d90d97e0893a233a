# Sourced by the GPU scripts beside it (bash). Run them from a work folder that holds specs/ (the
# files of this folder), real/ (fruits-nuts: train.json, val.json, images/) and the synthetic
# dataset folders the specs name (synth/ etc.). Environment:
#   OUT     where results go (default ./out)
#   WHEELS  a folder of wheels to install synthloop and its dependencies from, offline (optional;
#           without it the synthloop of this repository and the installed packages are used)
set -uo pipefail
SPECS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SPECS_DIR/../../.." && pwd)
OUT=$(mkdir -p "${OUT:-$PWD/out}" && cd "${OUT:-$PWD/out}" && pwd)
export OUT
if [ -n "${WHEELS:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$REPO
else
  export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
S="python3 -m synthloop.cli"

gpu_info() {  # the GPU, driver and library versions, into $OUT/gpu.txt
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee -a "$OUT/gpu.txt"
  python3 -c "import torch, torchvision; print(torch.__version__, torchvision.__version__)" | tee -a "$OUT/gpu.txt"
}

spec_from() {  # spec_from BASE NAME ITERS WORKERS [LOAD_GRAPH] [LR] [DISTILL_WEIGHT] [SEED] [FREEZE_BLOCKS]
  # specs/NAME.yaml: specs/BASE.yaml trained ITERS iterations (one checkpoint at the end) on every
  # folder under ../synth, optionally from a pruned graph, at another lr, distilled from ../base.pt,
  # with another seed, or with backbone blocks frozen (TLT numbering: 0 stem, 1-7 stages, e.g. 0,1,2,3)
  local base=$1 name=$2 iters=$3 workers=$4 graph=${5-} lr=${6-} kd=${7-} seed=${8-} freeze=${9-}
  sed -e "s#paths: \[../synth\]#paths: [\"../synth/*\"]#" -e "s#^iterations: 250#iterations: $iters#" \
      -e "s#^checkpoint_interval: 250#checkpoint_interval: $iters#" -e "s#num_workers: 12#num_workers: $workers#" \
      "specs/$base.yaml" > "specs/$name.yaml"
  if [ -n "$graph" ]; then
    sed -i -e "s#weights: package#weights: null#" \
      -e "s#^model: {family: detectnet_v2,#model: {family: detectnet_v2, load_graph: ../$graph,#" "specs/$name.yaml"
  fi
  [ -n "$lr" ] && sed -i "s#lr: 0.001,#lr: $lr,#" "specs/$name.yaml"
  [ -n "$seed" ] && echo "seed: $seed" >> "specs/$name.yaml"
  [ -n "$kd" ] && echo "distill: {teacher: ../base.pt, weight: $kd}" >> "specs/$name.yaml"
  [ -n "$freeze" ] && sed -i "s#weights: null}#weights: null, freeze_blocks: [$freeze]}#" "specs/$name.yaml"
  return 0
}

train() {  # train NAME: synthloop train specs/NAME.yaml --out NAME, wall time into $OUT/times.txt
  local t0; t0=$(date +%s)
  $S train "specs/$1.yaml" --out "$1" --quiet > "$1.log" 2>&1 || tail -5 "$1.log"
  echo "$1 train $(( $(date +%s) - t0 )) s" >> "$OUT/times.txt"
}

evaluate_val() {  # evaluate_val MODEL REPORT: the model on real/val.json, report JSON to REPORT
  $S evaluate "$1" --data real/val.json --out "$2" --worst 0 --quiet > /dev/null 2>&1 || echo "evaluate $1 failed"
}

strip_ckpt() {  # strip_ckpt IN OUT: the checkpoint without optimizer state, weights in fp16
  python3 "$SPECS_DIR/strip.py" "$1" "$2"
}

print_ap() {  # print_ap REPORT...: bbox (and segm) AP, AP50 and VOC mAP of evaluation reports
  python3 - "$@" <<'PY'
import json, os, sys
for f in sys.argv[1:]:
    r = json.load(open(f))
    coco = {k: v["stats"] for k, v in r["coco"].items() if isinstance(v, dict) and "stats" in v}
    ap = {k: {m: round(s[m], 4) for m in ("AP", "AP50")} for k, s in coco.items()}
    print(os.path.basename(f), ap, "VOC mAP", round(r["voc"]["mAP"], 4))
PY
}
