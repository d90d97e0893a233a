"""strip.py IN OUT: a training checkpoint without optimizer, scaler or scheduler state, weights in fp16."""

import sys

import torch

ck = torch.load(sys.argv[1], map_location="cpu", weights_only=True)
ck["optimizer"] = {"state": {}, "param_groups": []}
ck["scaler"] = {}
ck["lr_scheduler"] = None
ck["rng"] = {}
ck["model"] = {k: (v.half() if v.is_floating_point() else v) for k, v in ck["model"].items()}  # < 16 MiB
torch.save(ck, sys.argv[2])
