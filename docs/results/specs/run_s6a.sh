#!/usr/bin/env bash
# issue 8, session 6: the 0.299x uniform pruning (un30.pt) retrained 2500 iterations at lr 5e-4 as in
# session 4's six seeds, but with the stem and stages 1-3 (to stride 8) frozen: do the early
# ImageNet-derived features, kept fixed, transfer to the real photos better? Seeds in SEEDS.
exec env ARMS="$(for s in ${SEEDS:-0 1 2 3}; do printf 'frz3_s%s:un30.pt:0.0005::%s:0,1,2,3 ' $s $s; done)" \
  bash .carry/gpu/run_prune3.sh
