#!/usr/bin/env bash
# issue 8, session 6: two more seeds (4, 5) of run_s6c.sh's un30_ex3h.pt, and two seeds (0, 1) of
# un30_exh.pt: only the DetectNet head convs excluded, the backbone pruned uniformly throughout
#   synthloop prune base.pt --out un30_exh.pt --allocation uniform --target-ratio 0.3 -el fuse -el lat16 -el lat32
# (0.299x parameters, 0.777x MACs), to tell the head's share from the early stages'.
exec env ARMS="ex3h_s4:un30_ex3h.pt:0.0005::4 ex3h_s5:un30_ex3h.pt:0.0005::5 exh_s0:un30_exh.pt:0.0005::0 exh_s1:un30_exh.pt:0.0005::1" \
  bash .carry/gpu/run_prune3.sh
