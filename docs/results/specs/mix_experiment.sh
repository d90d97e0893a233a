#!/usr/bin/env bash
# The mixing experiment: DetectNet_v2 at real fractions 0/0.25/0.5/1 x blend/pretrain_finetune x
# seeds + the synthetic-only and real-only baselines (specs/mix.yaml), evaluated on fruits-nuts val.
# Resumable: finished runs are kept; a mixstate.tgz from an earlier, cut-off call is unpacked first.
#   MIX_BUDGET  seconds this call may train (default 420); run again to go on
# Writes $OUT/results.json, summary.md, report.html and mixstate.tgz (the experiment folder
# without checkpoints, to resume elsewhere).
source "$(dirname "$0")/gpu_env.sh"
[ -f mixstate.tgz ] && tar xzf mixstate.tgz
t0=$(date +%s)
timeout "${MIX_BUDGET:-420}" $S mix run specs/mix.yaml --out mixout --quiet --no-report > mix.log 2>&1
echo "mix rc=$? wall $(( $(date +%s) - t0 )) s"
grep -E '"status"|error' mix.log | tail -20
$S mix report mixout > /dev/null 2>&1
cp mixout/results.json mixout/summary.md mixout/report.html "$OUT/" 2>/dev/null
tar czf "$OUT/mixstate.tgz" --exclude='*.pt' --exclude='tensorboard' mixout
head -40 mixout/summary.md
