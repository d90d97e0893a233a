"""The sim-to-real gap: object statistics, KID in Lite0 features, coverage holes, HTML report.

``stats`` (pure statistics), ``kid`` (the estimator), ``images`` (reading, resizing, crops),
``features`` (EfficientNet-Lite0 embeddings), ``compute`` (:func:`compute_gap`), ``html`` (the
report), ``run`` (features + progress + report on disk).
"""
