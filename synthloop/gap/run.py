"""``gap_to_folder``: compute the gap with Lite0 features under a progress bar, write the report."""

from __future__ import annotations

from pathlib import Path

from synthloop.dataset.types import Dataset
from synthloop.gap.compute import GapOptions, GapReport, compute_gap
from synthloop.gap.features import LiteFeatures
from synthloop.gap.html import write_report
from synthloop.progress import JobProgress


def gap_to_folder(
    synth: Dataset,
    real: Dataset,
    out: str | Path | None,
    *,
    labeled: bool,
    options: GapOptions = GapOptions(),
    synth_name: str = "synthetic",
    real_name: str = "real",
    quiet: bool = False,
    features: LiteFeatures | None = None,
) -> GapReport:
    """:func:`~synthloop.gap.compute.compute_gap` with :class:`LiteFeatures` (CPU) and a progress
    bar over the frames of both sides; ``gap.json`` and ``gap.html`` go to ``out`` (if given)."""
    feats = features or LiteFeatures()
    with JobProgress(len(synth.frames) + len(real.frames), "gap", quiet=quiet, unit="image") as prog:
        report = compute_gap(
            synth,
            real,
            feats.embed,
            labeled=labeled,
            options=options,
            synth_name=synth_name,
            real_name=real_name,
            on_frame=prog.advance,
        )
    if out is not None:
        write_report(report, out)
    return report
