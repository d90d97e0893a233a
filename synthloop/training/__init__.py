"""Training adapters: datasets, backbones, detectors (DetectNet_v2-style, Mask R-CNN), experiment
specs, synthetic/real mixing, the training loop and the inference :class:`Predictor`.

Everything here takes the one in-memory :class:`synthloop.dataset.types.Dataset`; boxes are pixel
``(x1, y1, x2, y2)`` floats, category ids start at 1 (label 0 is background in Mask R-CNN).
"""
