#!/usr/bin/env bash
# Detectors pre-trained on renders, fine-tuned on the 8 fruits-nuts train photos, evaluated on the
# 6 val photos: specs/<family>_ptft.yaml for each family in FAMILIES (default "maskrcnn detectnet").
# Writes $OUT/<family>_synth_then_real_val.json (evaluation report), <family>_metrics.jsonl, gpu.txt.
#   TRAIN_TIMEOUT  seconds one training may take (default: no limit)
source "$(dirname "$0")/gpu_env.sh"
gpu_info
for f in ${FAMILIES:-maskrcnn detectnet}; do
  t0=$(date +%s)
  timeout "${TRAIN_TIMEOUT:-0}" $S train "specs/${f}_ptft.yaml" --out "$f" --quiet > "$f.log" 2>&1 || tail -5 "$f.log"
  echo "$f train wall $(( $(date +%s) - t0 )) s" | tee -a "$OUT/gpu.txt"
  cp "$f/metrics.jsonl" "$OUT/${f}_metrics.jsonl"
  evaluate_val "$f" "ev_$f"
  cp "ev_$f/report.json" "$OUT/${f}_synth_then_real_val.json"
  print_ap "$OUT/${f}_synth_then_real_val.json" | tee -a "$OUT/gpu.txt"
done
# throughput and memory every 100 steps
grep -h '"kind": "train"' "$OUT"/*_metrics.jsonl | python3 -c "
import json, sys
for l in sys.stdin:
    r = json.loads(l)
    if r['step'] % 100 == 0: print({k: r.get(k) for k in ('phase', 'step', 'images_per_s', 'gpu_mem_gb', 'cuda_graph_replays', 'cuda_graph_eager')})
"
