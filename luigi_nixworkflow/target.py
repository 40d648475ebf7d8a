"""NixTarget: the output directory of a NixTask, as a Luigi target.

Before the task is realised a target *is* its placeholder (`str()`, `.path`, `os.fspath`), so
interpolating it into another task's command carries the dependency, exactly like the Python
front door's `output()`; once realised it is the read-only store object. It is never written
through: a task writes only into its build's output directory while it runs.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from typing import IO, TYPE_CHECKING, Any

import luigi

from nixlib.errors import NixWorkflowError

if TYPE_CHECKING:
    from luigi_nixworkflow.task import NixTask

# True while the adapter renders a command(): targets are then always their placeholders.
RENDERING: ContextVar[bool] = ContextVar("nixworkflow_rendering", default=False)


class NixTarget(luigi.Target):
    """A NixTask's output directory, or a path inside it (`target / "model.json"`)."""

    def __init__(self, task: NixTask, parts: tuple[str, ...] = ()) -> None:
        self.task = task
        self.parts = parts

    @property
    def path(self) -> str:
        """The store object once realised (read-only), the placeholder before (and inside command())."""
        from luigi_nixworkflow import settings

        result = None if RENDERING.get() else self.task.nix_result()
        if result is None:
            base = self.task.nix_placeholder()
        else:
            base = str(settings.engine().store.object_path(result.outputs["out"]))
        return "/".join((base, *self.parts))

    def exists(self) -> bool:
        if self.task.nix_result() is None:
            return False
        return not self.parts or os.path.lexists(self.path)

    def open(self, mode: str = "r") -> IO[Any]:
        """Read a file of the realised output."""
        if set(mode) & set("wax+"):
            raise NixWorkflowError(
                f"{self!r} is read-only: a NixTask writes only into its output directory while it runs "
                "($out in command(), the `out` argument of produce(out)); store objects never change"
            )
        if not self.exists():
            raise FileNotFoundError(f"{self!r} does not exist: the task is not realised (or has no such file)")
        return open(self.path, mode)

    def join(self, *parts: str | os.PathLike[str]) -> NixTarget:
        """A path inside the output directory."""
        names: list[str] = []
        for part in parts:
            text = os.fspath(part)
            if os.path.isabs(text) or ".." in text.split("/"):
                raise NixWorkflowError(f"{text!r} is not a relative path inside the output of {self.task.task_id}")
            names += [n for n in text.split("/") if n not in ("", ".")]
        return NixTarget(self.task, self.parts + tuple(names))

    def __truediv__(self, part: str | os.PathLike[str]) -> NixTarget:
        return self.join(part)

    def __fspath__(self) -> str:
        return self.path

    def __str__(self) -> str:
        return self.path

    def __repr__(self) -> str:
        inside = "/".join(self.parts)
        return f"NixTarget({self.task.task_id}{'/' + inside if inside else ''})"
