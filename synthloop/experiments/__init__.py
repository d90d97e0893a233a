"""Mixing-ratio experiments: a matrix of training runs over real fractions x schedules x seeds
(plus synthetic-only / real-only baselines), a resumable runner, and an HTML/Markdown report.

Modules: ``matrix`` (the MixExperiment YAML and its expansion into runs), (training goes through
:mod:`synthloop.training.api`), ``runner`` (train + evaluate every run, resumably),
``report`` (collect results, results.json, summary.md), ``html`` (self-contained report.html).
"""
