"""Active learning: per-object outcomes -> weak regions of the scene parameters -> derived recipes,
real-pool selection, and the render/train/evaluate loop that ties them together.

Modules: ``outcomes`` (feature table), ``mining`` (binned recall with Wilson CIs, a shallow tree
with permutation importance, :class:`~synthloop.active.mining.WeakRegion`), ``derive`` (weak
regions -> mixture distributions in a recipe), ``select`` (uncertainty + diversity ranking of
unlabeled real images), ``loop`` (``LoopSpec``, ``run_loop``), ``report`` (per-round tables, HTML).
"""
