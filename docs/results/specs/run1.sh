#!/usr/bin/env bash
# GPU run for issue 5: DetectNet_v2 and Mask R-CNN, synthetic pre-training then fruits-nuts fine-tuning
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee $OUT/gpu.txt
python3 -c "import torch, torchvision; print(torch.__version__, torchvision.__version__)" | tee -a $OUT/gpu.txt
cd .carry/gpu
S="python3 -m synthloop.cli"
for m in dn:detectnet mr:maskrcnn; do
  k=${m%%:*}; f=${m##*:}
  t0=$(date +%s)
  $S train specs/${f}_ptft.yaml --out runs/$k --quiet > $OUT/${k}_train.jsonl 2> runs_${k}.err || { tail -30 runs_${k}.err; }
  echo "$k train wall $(( $(date +%s) - t0 )) s" | tee -a $OUT/gpu.txt
  $S evaluate runs/$k --data real/val.json --out runs/${k}_eval --quiet > /dev/null 2> eval_${k}.err || tail -20 eval_${k}.err
  cp runs/${k}_eval/report.json $OUT/${k}_eval.json
  python3 -c "import json;r=json.load(open('runs/${k}_eval/report.json'));c=r['coco'];print('$k', {t: {m: round(v,4) for m,v in c[t]['stats'].items() if m in ('AP','AP50','AP75')} for t in c if isinstance(c.get(t),dict) and 'stats' in c[t]}, 'VOC mAP', r['voc'].get('mAP'))" | tee -a $OUT/gpu.txt
done
cd ../..
timeout 200 python3 benchmarks/train.py --spec .carry/gpu/specs/maskrcnn_ptft.yaml --iters 60 --warmup 10 --out $OUT/train_bench.json > bench.log 2>&1; tail -40 bench.log | grep -v '"kind"'
