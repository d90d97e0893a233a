"""User-facing errors: one line that says what is wrong and where (file, record, field)."""

from __future__ import annotations


class SynthloopError(Exception):
    """An error caused by the user's input. The CLI prints ``str(err)`` on one line, exit 2."""

    def __init__(self, message: str, *, path: str | None = None, where: str | None = None):
        self.message = message
        self.path = path
        self.where = where
        super().__init__(self.format())

    def format(self) -> str:
        loc = ""
        if self.path:
            loc = str(self.path)
            if self.where:
                loc += f": {self.where}"
        elif self.where:
            loc = self.where
        return f"{loc}: {self.message}" if loc else self.message


class RecipeError(SynthloopError):
    """A recipe YAML that does not validate."""


class DatasetError(SynthloopError):
    """A dataset (COCO/KITTI/synthloop folder) that cannot be read."""


class RenderError(Exception):
    """Blender failed on a frame (crash, missing output). Not a user error: retried once."""
