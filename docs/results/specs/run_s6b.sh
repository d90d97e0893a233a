#!/usr/bin/env bash
# issue 8, session 6: uniform pruning with the stem and stages 1-3 (to stride 8) excluded, so the
# early layers keep their full width (TLT --excluded_layers), made here on the CPU with
#   synthloop prune base.pt --out un30_ex3.pt --allocation uniform --target-ratio 0.3 \
#     -el backbone.body.stem -el backbone.body.blocks.0 ... -el backbone.body.blocks.4
# (0.280x parameters, 0.467x MACs; the search cannot land nearer 0.30: at a fraction of 0.5 the
# 128-channel head convs step from 72 to 64). Retrained as session 4's six seeds: 2500 iterations,
# lr 5e-4. Seeds in SEEDS.
exec env ARMS="$(for s in ${SEEDS:-0 1 2 3}; do printf 'ex3_s%s:un30_ex3.pt:0.0005::%s ' $s $s; done)" \
  bash .carry/gpu/run_prune3.sh
