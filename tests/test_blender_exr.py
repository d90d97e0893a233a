"""exr.py without Blender: channel lookup, id rounding, background depth -> inf, row order kept."""

from __future__ import annotations

import numpy as np
import OpenEXR
import pytest

from synthloop.errors import RenderError
from synthloop.generators.exr import id_depth_from_channels, read_id_depth_exr


def _write_exr(path, channels: dict[str, np.ndarray]) -> None:
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    OpenEXR.File(header, {k: v.astype(np.float32) for k, v in channels.items()}).write(str(path))


@pytest.mark.parametrize("prefix", ["", "ViewLayer."])
def test_reads_blender_channel_names_and_keeps_row_order(tmp_path, prefix):
    ids = np.zeros((5, 7), np.float32)
    ids[0, :3] = 4  # top row, left: must stay top-left
    ids[4, 6] = 2
    depth = np.full((5, 7), 1e10, np.float32)
    depth[0, :3] = 1.25
    depth[4, 6] = 0.5
    path = tmp_path / "a.exr"
    _write_exr(path, {f"{prefix}IndexOB.V": ids, f"{prefix}Depth.V": depth})
    got_ids, got_depth = read_id_depth_exr(path)
    assert got_ids.dtype == np.int32 and got_depth.dtype == np.float32
    assert got_ids.shape == (5, 7)
    np.testing.assert_array_equal(got_ids, ids.astype(np.int32))
    assert np.all(got_depth[0, :3] == 1.25) and got_depth[4, 6] == 0.5
    assert np.isinf(got_depth[ids == 0]).all()


def test_missing_channel_and_missing_file_raise_render_error(tmp_path):
    path = tmp_path / "b.exr"
    _write_exr(path, {"Depth.V": np.ones((2, 2))})
    with pytest.raises(RenderError, match="object index"):
        read_id_depth_exr(path)
    with pytest.raises(RenderError, match="does not exist"):
        read_id_depth_exr(tmp_path / "nope.exr")


def test_fractional_ids_are_rejected_and_depth_threshold():
    with pytest.raises(RenderError, match="whole"):
        id_depth_from_channels(np.array([[0.0, 1.5]]), np.ones((1, 2)))
    ids, depth = id_depth_from_channels(np.array([[3.0000001, 0.0]]), np.array([[2.0, 5e9]]))
    assert ids.tolist() == [[3, 0]]
    assert depth[0, 0] == 2.0 and np.isinf(depth[0, 1])
