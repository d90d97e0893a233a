"""Bundled recipes: YAML files shipped in ``synthloop/scenes/bundled/``, addressed by name."""

from __future__ import annotations

from pathlib import Path

from synthloop.errors import RecipeError

BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"
DEFAULT_RECIPE = "tabletop"


def list_bundled() -> list[str]:
    """Names of the bundled recipes (file stems), sorted."""
    return sorted(p.stem for p in BUNDLED_DIR.glob("*.yaml"))


def bundled_path(name: str) -> Path:
    """Path of the bundled recipe ``name``; RecipeError if there is none."""
    path = BUNDLED_DIR / f"{name}.yaml"
    if not path.is_file():
        raise RecipeError(
            f"no bundled recipe named '{name}'; bundled: {', '.join(list_bundled())}", path=name
        )
    return path


def resolve_recipe(name_or_path: str | Path) -> Path:
    """A YAML path as given (if it exists, or looks like a path) or a bundled recipe name.

    Raises RecipeError naming the argument when neither exists."""
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.is_file():
        return path
    looks_like_path = path.suffix in (".yaml", ".yml") or "/" in text or "\\" in text
    if not looks_like_path and (BUNDLED_DIR / f"{text}.yaml").is_file():
        return BUNDLED_DIR / f"{text}.yaml"
    raise RecipeError(
        f"no such recipe file or bundled recipe; bundled: {', '.join(list_bundled())}",
        path=text,
    )
