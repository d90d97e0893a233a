#!/usr/bin/env bash
# issue 5, session 5: the real runs again with the new defaults (CUDA-graph backbone, batched NMS):
# Mask R-CNN and DetectNet_v2 on 160 tabletop renders, then fine-tuned on fruits-nuts train; val AP
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
cd .carry/gpu
S="python3 -m synthloop.cli"
for f in maskrcnn detectnet; do
  t0=$(date +%s)
  timeout 230 $S train specs/${f}_ptft.yaml --out $f --quiet > $f.log 2>&1 || tail -5 $f.log
  echo "$f train $(( $(date +%s) - t0 )) s" | tee -a $OUT/times.txt
  cp $f/metrics.jsonl $OUT/${f}_metrics.jsonl
  timeout 60 $S evaluate $f --data real/val.json --out ev_$f --worst 0 --quiet > /dev/null 2>&1 || echo "eval $f failed"
  cp ev_$f/report.json $OUT/${f}_val.json
  python3 - "$OUT/${f}_val.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["coco"]
print(sys.argv[1].split("/")[-1], {k: {m: round(v["stats"][m], 3) for m in ("AP", "AP50")} for k, v in r.items() if isinstance(v, dict) and "stats" in v})
PY
done
grep -h '"kind": "train"' $OUT/*_metrics.jsonl | python3 -c "
import json, sys
for l in sys.stdin:
    r = json.loads(l)
    if r['step'] % 100 == 0: print({k: r.get(k) for k in ('phase', 'step', 'images_per_s', 'gpu_mem_gb', 'cuda_graph_replays', 'cuda_graph_eager')})
"
