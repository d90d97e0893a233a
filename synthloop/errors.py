"""User-facing errors: one line that says what is wrong and where (file, record, field)."""

from __future__ import annotations


class SynthloopError(Exception):
    """An error caused by the user's input. The CLI prints ``str(err)`` (one line per problem:
    ``more`` holds further (where, message) problems of the same file), exit 2."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        where: str | None = None,
        more: tuple[tuple[str | None, str], ...] | list[tuple[str | None, str]] = (),
    ):
        self.message = message
        self.path = path
        self.where = where
        self.more = tuple(more)
        super().__init__(self.format())

    def _line(self, where: str | None, message: str) -> str:
        loc = ""
        if self.path:
            loc = str(self.path)
            if where:
                loc += f": {where}"
        elif where:
            loc = where
        return f"{loc}: {message}" if loc else message

    def format(self) -> str:
        return "\n".join(self._line(w, m) for w, m in ((self.where, self.message), *self.more))


class RecipeError(SynthloopError):
    """A recipe YAML that does not validate."""


class DatasetError(SynthloopError):
    """A dataset (COCO/KITTI/synthloop folder) that cannot be read."""


class RenderError(Exception):
    """Blender failed on a frame (crash, missing output). Not a user error: retried once."""
