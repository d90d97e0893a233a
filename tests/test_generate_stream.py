"""generate_frames streams a range of frame indices: a huge job starts at once, and a resume counts
its finished frames from the folder, not by walking the range (no Blender: z-buffer renders)."""

from __future__ import annotations

import pytest

from synthloop.generators.generate import _count_done, generate_frames
from synthloop.scenes.recipe import load_recipe


class _Stop(BaseException):
    """Raised by the stand-in renderer to end a run that would otherwise never end."""


def test_a_range_of_10_to_the_15_frames_starts_rendering_at_once(tmp_path, zbuffer_renderer):
    class StopAfterTwo(zbuffer_renderer):
        def render(self, spec):
            if zbuffer_renderer.renders == 2:
                raise _Stop
            return super().render(spec)

    out = tmp_path / "huge"
    with pytest.raises(_Stop):  # a list of 10**15 indices would exhaust memory before this
        generate_frames(
            load_recipe("shapes"), 3, range(10**15), out, renderer_factory=StopAfterTwo, quiet=True
        )
    assert sorted(p.stem for p in (out / "records").glob("*.json")) == ["000000", "000001"]


def test_resume_skips_and_counts_done_frames(tmp_path, zbuffer_renderer):
    recipe, out = load_recipe("shapes"), tmp_path / "job"
    first = generate_frames(recipe, 3, range(2), out, renderer_factory=zbuffer_renderer, quiet=True)
    assert first.rendered == [0, 1] and first.skipped == []
    again = generate_frames(recipe, 3, range(3), out, renderer_factory=zbuffer_renderer, quiet=True)
    assert again.skipped == [0, 1] and again.rendered == [2] and zbuffer_renderer.renders == 3


def test_count_done_reads_stems_not_the_range():
    done = {"000000", "000007", "12", "notes", "1000000"}  # "12" and "notes" are no frame's stem
    assert _count_done(range(10**15), done) == 3
    assert _count_done(range(5, 10), done) == 1
    assert _count_done([0, 12, 7], done) == 2
