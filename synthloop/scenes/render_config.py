"""The recipe's ``render:`` block: quality presets, render options and the render device.

``quality`` names a preset (:data:`QUALITY_PRESETS`); every field the YAML leaves out takes the
preset's value, every field it gives wins. The stored recipe (``recipe_to_yaml``) lists every
resolved field, so it renders the same frames even if a preset changes later.

* ``standard`` (the default): the cheapest setting of ``benchmarks/render_quality.py`` whose
  PSNR and SSIM against a high-sample reference are both at least those of the earlier default
  (``legacy``: 16 spp, no adaptive sampling, no denoising), over the whole image and inside the
  object masks. The measurement is in ``docs/results/render_quality.md``.
* ``denoised``: 9 spp and OpenImageDenoise (albedo + normal guides, fast prefilter), 2 bounces.
  At 640x480 it meets the earlier default on all four figures at 0.74x the CPU time of BlenderProc
  at equal quality; at 320x240 it does not (OIDN smooths the small objects' texture: mask SSIM).
  Not the default: it meets the rule at one size only, and it changes the look of every frame.
* ``preview``: a cheap proxy render (recipe fitting, quick looks): few samples, denoised, short
  light paths, small textures. Annotations are exact whatever the quality.
* ``legacy``: the renders of the earlier default, for comparisons.

``device`` (``cpu``, ``cuda``, ``optix``, ``auto``) is where Cycles renders; it does not enter
the SceneSpec (a frame is the same frame on any device) and ``--device`` on ``generate`` /
``farm work`` overrides it. See :mod:`synthloop.generators.devices`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import model_validator

from synthloop.scenes.spec import RenderOptions

Quality = Literal["standard", "denoised", "preview", "legacy"]
RenderDevice = Literal["cpu", "cuda", "optix", "auto"]
RENDER_DEVICES: tuple[str, ...] = ("cpu", "cuda", "optix", "auto")

LEGACY: dict[str, Any] = {
    "samples": 16,
    "adaptive_sampling": False,
    "denoise": False,
    "max_bounces": 4,
    "persistent_data": False,
}

QUALITY_PRESETS: dict[str, dict[str, Any]] = {
    "standard": {
        "samples": 16,
        "adaptive_sampling": False,
        "denoise": False,
        "max_bounces": 2,
        "persistent_data": True,
    },
    "denoised": {
        "samples": 9,
        "adaptive_sampling": False,
        "denoise": True,
        "denoise_passes": "albedo_normal",
        "denoise_prefilter": "fast",
        "denoise_quality": "high",
        "max_bounces": 2,
        "persistent_data": True,
    },
    "preview": {
        "samples": 4,
        "adaptive_sampling": False,
        "denoise": True,
        "denoise_passes": "albedo_normal",
        "denoise_prefilter": "fast",
        "denoise_quality": "fast",
        "max_bounces": 2,
        "texture_limit": 512,
        "persistent_data": True,
    },
    "legacy": LEGACY,
}


def preset_options(quality: str) -> dict[str, Any]:
    """The field values of the ``quality`` preset (a copy; unknown names raise ``KeyError``)."""
    return dict(QUALITY_PRESETS[quality])


class RenderConfig(RenderOptions):
    """The recipe's ``render:`` block: :class:`~synthloop.scenes.spec.RenderOptions` whose
    missing fields come from the ``quality`` preset, plus the render ``device``."""

    quality: Quality = "standard"
    device: RenderDevice = "cpu"

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        quality = data.get("quality", "standard")
        if not isinstance(quality, str) or quality not in QUALITY_PRESETS:
            return data  # the field's own validation names the allowed values
        return {**QUALITY_PRESETS[quality], **data}

    def options(self) -> dict[str, Any]:
        """The :class:`RenderOptions` fields (what a SceneSpec's render settings copy)."""
        return self.model_dump(exclude={"quality", "device"})


def preview_render(render: RenderConfig, **overrides: Any) -> RenderConfig:
    """``render`` switched to the ``preview`` preset (device kept), then ``overrides`` applied:
    the cheap proxy render of recipe fitting, e.g.
    ``recipe.model_copy(update={"render": preview_render(recipe.render)})``."""
    return RenderConfig.model_validate({"quality": "preview", "device": render.device, **overrides})
