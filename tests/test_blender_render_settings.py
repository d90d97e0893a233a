"""Render options reach Blender; persistent data keeps annotations exact; devices without a GPU.

Every render is tiny (64x48 or smaller, few samples)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import NON_DEFAULT
from PIL import Image

from synthloop.generators.generate import default_renderer_factory, generate_frames
from synthloop.scenes.recipe import recipe_from_dict
from synthloop.scenes.sampler import sample_scene

pytestmark = pytest.mark.blender

RECIPE = {
    "name": "tiny",
    "resolution": [64, 48],
    "camera": {"distance": 0.5, "elevation_deg": 70},
    "classes": [
        {"name": "ball", "count": 2, "shape": {"kind": "sphere", "dimensions": [0.08, 0.08, 0.08]}},
        {"name": "crate", "count": 1, "shape": {"kind": "box", "dimensions": [0.07, 0.05, 0.04]}},
    ],
}


def _recipe(render: dict):
    return recipe_from_dict({**RECIPE, "render": render}, source="tiny.yaml")


def _denoise_mix(scene) -> float:
    """The denoised share of the saved image: the mix node's factor when it feeds the Composite
    node and compositing is on, else 1 (the render result is saved as it is)."""
    composite = next(n for n in scene.node_tree.nodes if n.bl_idname == "CompositorNodeComposite")
    source = composite.inputs["Image"].links[0].from_node
    if scene.render.use_compositing and source.bl_idname == "CompositorNodeMixRGB":
        return round(source.inputs[0].default_value, 6)
    return 1.0


def _cycles_state(bpy) -> dict:
    scene = bpy.context.scene
    c = scene.cycles
    return {
        "samples": c.samples,
        "adaptive_sampling": c.use_adaptive_sampling,
        "adaptive_threshold": round(c.adaptive_threshold, 6),
        "adaptive_min_samples": c.adaptive_min_samples,
        "denoise": c.use_denoising,
        "denoise_passes": {"RGB": "rgb", "RGB_ALBEDO": "albedo", "RGB_ALBEDO_NORMAL": "albedo_normal"}[
            c.denoising_input_passes
        ],
        "denoise_prefilter": c.denoising_prefilter.lower(),
        "denoise_quality": c.denoising_quality.lower(),
        "denoise_mix": _denoise_mix(scene),
        "max_bounces": c.max_bounces,
        "diffuse_bounces": c.diffuse_bounces,
        "glossy_bounces": c.glossy_bounces,
        "transmission_bounces": c.transmission_bounces,
        "transparent_bounces": c.transparent_max_bounces,
        "clamp_direct": c.sample_clamp_direct,
        "clamp_indirect": c.sample_clamp_indirect,
        "caustics": c.caustics_reflective and c.caustics_refractive,
        "light_tree": c.use_light_tree,
        "persistent_data": scene.render.use_persistent_data,
        "texture_limit": int(c.texture_limit_render) if scene.render.use_simplify else 0,
        "tile_size": c.tile_size,
    }


def test_every_render_option_reaches_blender_and_none_leaks_to_the_next_frame(tmp_path):
    bpy = pytest.importorskip("bpy")
    from synthloop.generators import blender_scene

    custom = sample_scene(_recipe(NON_DEFAULT), 0, 0)
    out = blender_scene.render_frame(custom, tmp_path / "a", threads=2)
    assert Path(out["rgb"]).is_file() and out["device"] == "CPU" and out["device_warning"] is None
    expected = {k: round(v, 6) if isinstance(v, float) else v for k, v in NON_DEFAULT.items()}
    assert _cycles_state(bpy) == expected
    assert bpy.context.scene.cycles.device == "CPU"
    assert bpy.context.scene.cycles.debug_use_spatial_splits  # same image, less CPU: always on

    legacy = sample_scene(_recipe({"quality": "legacy", "samples": 2}), 0, 0)
    blender_scene.render_frame(legacy, tmp_path / "b", threads=2)
    state = _cycles_state(bpy)
    options = type(legacy.render).model_fields
    resolved = {**{k: getattr(legacy.render, k) for k in options}, **legacy.render.bounces()}
    resolved["transparent_bounces"] = resolved.pop("transparent_max_bounces")
    assert state == {k: resolved[k] for k in state}


def _image(tmp_path: Path, name: str, render: dict) -> np.ndarray:
    """Frame 0 of the tiny recipe at ``render``, as an (H, W, 3) float array of 8-bit levels."""
    from synthloop.generators import blender_scene

    spec = sample_scene(_recipe(render), 0, 0)
    out = blender_scene.render_frame(spec, tmp_path / name, threads=2)
    return np.asarray(Image.open(out["rgb"]).convert("RGB"), dtype=np.float64)


def test_denoise_mix_blends_the_noisy_and_the_denoised_render(tmp_path):
    """Mix 0 saves the noisy render, 1 the denoised one; between, every pixel lies between the
    two (the blend is convex in linear light, and the view transform is monotone per channel)."""
    pytest.importorskip("bpy")
    paths = {"samples": 1, "max_bounces": 4}  # 1 spp: a noisy render the denoiser changes a lot
    noisy = _image(tmp_path, "noisy", paths)
    denoised = _image(tmp_path, "denoised", {**paths, "denoise": True})
    changed = np.abs(denoised - noisy).max(axis=-1) > 8
    assert changed.sum() >= 20
    assert np.array_equal(_image(tmp_path, "mix0", {**paths, "denoise": True, "denoise_mix": 0.0}), noisy)
    # a small share: the denoised pixels that differ most are far above 1 in linear light, so a
    # larger share of them already clips to white
    half = _image(tmp_path, "mix", {**paths, "denoise": True, "denoise_mix": 0.05})
    low, high = np.minimum(noisy, denoised), np.maximum(noisy, denoised)
    assert np.all(half >= low - 1) and np.all(half <= high + 1)  # 1 level: rounding
    assert (np.abs(half - noisy).max(axis=-1)[changed] > 2).mean() > 0.8  # a blend, not the noisy
    assert (np.abs(half - denoised).max(axis=-1)[changed] > 2).mean() > 0.3  # nor the denoised
    again = _image(tmp_path, "denoised_again", {**paths, "denoise": True})
    assert np.array_equal(again, denoised)  # the mixed frame before it leaks nothing


def _files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for sub in ("records", "instances", "images", "depth")
        for p in sorted((root / sub).glob("*"))
    }


def test_persistent_data_gives_the_same_frame_as_a_fresh_process(tmp_path):
    recipe = _recipe({"samples": 4, "persistent_data": True, "denoise": True})
    warm, fresh = tmp_path / "warm", tmp_path / "fresh"
    factory = default_renderer_factory(2)
    generate_frames(recipe, 5, [1, 2, 0], warm, renderer_factory=factory, quiet=True)
    generate_frames(recipe, 5, [0], fresh, renderer_factory=factory, quiet=True)
    warm_files, fresh_files = _files(warm), _files(fresh)
    assert set(fresh_files) == {
        "records/000000.json",
        "instances/000000.png",
        "images/000000.png",
        "depth/000000.npz",
    }
    for name, data in fresh_files.items():
        assert warm_files[name] == data, name  # annotations byte-identical; the image too


def _generate(tmp_path: Path, device: str) -> subprocess.CompletedProcess:
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump({**RECIPE, "resolution": [32, 24], "render": {"samples": 1}}))
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "synthloop.cli",
            "generate",
            "-r",
            str(recipe),
            "-n",
            "1",
            "-o",
            str(tmp_path / f"out_{device}"),
            "--threads",
            "1",
            "--device",
            device,
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )


def _has_gpu() -> bool:
    import shutil

    return (
        shutil.which("nvidia-smi") is not None
        and subprocess.run(["nvidia-smi"], capture_output=True).returncode == 0
    )


@pytest.mark.skipif(_has_gpu(), reason="this machine has an NVIDIA GPU: the no-GPU paths cannot be checked")
def test_cli_device_without_gpu(tmp_path):
    cuda = _generate(tmp_path, "cuda")
    assert cuda.returncode == 2, cuda.stderr
    lines = cuda.stderr.strip().splitlines()
    assert len(lines) == 1 and "render.device: no CUDA GPU found" in lines[0], cuda.stderr
    assert not list((tmp_path / "out_cuda" / "records").glob("*.json"))

    auto = _generate(tmp_path, "auto")
    assert auto.returncode == 0, auto.stderr
    assert "warning: render.device auto: no CUDA/OptiX GPU found" in auto.stderr
    assert len(list((tmp_path / "out_auto" / "records").glob("*.json"))) == 1
