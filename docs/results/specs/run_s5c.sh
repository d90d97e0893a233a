#!/usr/bin/env bash
# issue 5, session 5 (final, the goal run): run_s5b.sh with the new defaults (CUDA graphs + batched
# NMS) against the variants that turn each of them off
VARIANTS=${VARIANTS-torchvision_nms,no_cuda_graph,per_image_heads} exec bash "$(dirname "$0")/run_s5b.sh"
