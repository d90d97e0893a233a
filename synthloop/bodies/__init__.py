"""Parametric human bodies: phenotype + joint rotations -> posed mesh + COCO-17 keypoints (3D).

Bottom layer (imports nothing from synthloop above it). :mod:`.coco` holds the COCO-17 vocabulary,
:mod:`.limits` the anatomical joint limits and phenotype names (pure data and checks),
:mod:`.model` the body model itself (PyPI ``anny``, the ``people`` extra), :mod:`.outfit` which
material paints each body region.
"""
