#!/usr/bin/env bash
# Targeted vs random generation: synthetic-only DetectNet_v2 (specs/mix_base.yaml at real fraction
# 0) trained on the base renders plus the frames each arm added, the arms in parallel; evaluated on
# the fruits-nuts val photos. ARMS names the models (default "m0 r1 r2 t1 t2"); a name ending in
# _s1 is the same model with seed 1. Datasets, in the work folder:
#   m0  synth/*                       (round 0: the base renders)
#   r1  synth/* rand1/*               r2  synth/* rand1/* rand2/*    (+40 / +80 frames, original recipe)
#   t1  synth/* targ1/*               t2  synth/* targ1/* targ2/*    (+40 / +80 frames, derived recipe)
# Writes $OUT/<arm>.pt (weights without optimizer state), $OUT/<arm>_real_val.json, logs.tgz;
# specs/active_experiment_summary.py turns the reports into active_experiment.{json,md}.
#   WORKERS  data loader workers per training (default 3)
source "$(dirname "$0")/gpu_env.sh"
B='"../synth/*"'; R1='"../rand1/*"'; R2='"../rand2/*"'; T1='"../targ1/*"'; T2='"../targ2/*"'
declare -A DATA=([m0]="$B" [r1]="$B,$R1" [r2]="$B,$R1,$R2" [t1]="$B,$T1" [t2]="$B,$T1,$T2")
arm() {  # arm NAME: train, strip, evaluate
  local name=$1 data=${DATA[${1%_s1}]:?unknown arm $1}
  sed -e "s#real_fraction: 0.5#real_fraction: 0.0#" -e "s#paths: \[../synth\]#paths: [$data]#" \
      -e "s#num_workers: 12#num_workers: ${WORKERS:-3}#" specs/mix_base.yaml > "specs/$name.yaml"
  case $name in *_s1) echo "seed: 1" >> "specs/$name.yaml" ;; esac
  train "$name"
  strip_ckpt "$name/checkpoints/last.pt" "$OUT/$name.pt"
  evaluate_val "$name/checkpoints/last.pt" "$OUT/${name}_real_val.json"
}
for a in ${ARMS:-m0 r1 r2 t1 t2}; do arm "$a" & done
wait
cat "$OUT/times.txt"
tar czf "$OUT/logs.tgz" ./*.log specs/*.yaml
print_ap "$OUT"/*_real_val.json
