"""NixTarget: the output directory of a NixTask, as a Luigi target.

Before the task is realised a target *is* its placeholder (`str()`, `.path`, `os.fspath`), so
interpolating it into another task's command carries the dependency, exactly like the Python
front door's `output()`; once realised it is the read-only store object. While the task's own
produce() runs, its target is the build's output (`$out` of the running build), so
`open(self.output().path, "w")` and `self.output().open("w")` write where the engine will hash
and store. A placeholder is never a writable path (it lies beneath a regular file, see
nixlib.context), and writing through a target outside its task's run is an error.
"""

from __future__ import annotations

import contextlib
import os
from contextvars import ContextVar
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import luigi
from luigi.local_target import LocalFileSystem

from luigi_nixworkflow import settings
from nixlib.errors import NixWorkflowError

if TYPE_CHECKING:
    from luigi_nixworkflow.task import NixTask

# True while the adapter renders a command(): targets are then always their placeholders.
RENDERING: ContextVar[bool] = ContextVar("nixworkflow_rendering", default=False)
BUILDING = "_nw_building"  # task attribute: the output path of its build while its produce() runs


def building_out(task: NixTask) -> Path | None:
    """Where `task` writes its output now: the running build's `$out`, or None outside its run.

    An attribute of the task instance (not a context variable) so threads produce() starts see it too."""
    return task.__dict__.get(BUILDING)


class NixTarget(luigi.target.FileSystemTarget):
    """A NixTask's output directory, or a path inside it (`target / "model.json"`).

    A FileSystemTarget (on the local filesystem), as RangeDaily, bulk_complete and luigi.contrib
    helpers expect; its path is computed on each access, so the base class's __init__ is not used."""

    fs = LocalFileSystem()

    def __init__(self, task: NixTask, parts: tuple[str, ...] = ()) -> None:
        self.task = task
        self.parts = parts

    @property
    def path(self) -> str:
        """The build's output while the task's produce() runs; else the store object once realised
        (read-only), the placeholder before (and inside command())."""
        building = building_out(self.task)
        if building is not None:
            return "/".join((str(building), *self.parts))
        result = None if RENDERING.get() else self.task.nix_result()
        if result is None:
            base = self.task.nix_placeholder()
        else:
            base = str(settings.engine().store.object_path(result.outputs["out"]))
        return "/".join((base, *self.parts))

    def exists(self) -> bool:
        if building_out(self.task) is not None:
            return os.path.lexists(self.path)
        if self.task.nix_result() is None:
            return False
        return not self.parts or os.path.lexists(self.path)

    def open(self, mode: str = "r") -> IO[Any]:
        """Read a file of the realised output; while the task's produce() runs, write its output."""
        if set(mode) & set("wax+"):
            return self._open_for_writing(mode)
        if not self.exists():
            raise FileNotFoundError(f"{self!r} does not exist: the task is not realised (or has no such file)")
        return open(self.path, mode)

    def _open_for_writing(self, mode: str) -> IO[Any]:
        """Only the running task writes, and only into its build: opening the target itself makes the
        output one file (replacing the still-empty output directory); a path inside it gets its parents."""
        out = building_out(self.task)
        if out is None:
            raise NixWorkflowError(
                f"{self!r} is written outside its task's run: a NixTask's output is written only by its own "
                "produce() while it runs (self.output().open('w'), open(self.output().path, 'w') or the `out` "
                "argument) or by its command() ($out); a realised output is a read-only store object"
            )
        path = self.path
        if not self.parts:
            with contextlib.suppress(OSError):
                os.rmdir(path)  # only ever succeeds on the empty directory the engine prepared
            if os.path.isdir(path):
                raise NixWorkflowError(
                    f"{self!r}: the output is already a directory with files in it, so it cannot also be written as "
                    "one file. Write a file inside it instead: (self.output() / 'name').open('w')"
                )
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        return open(path, mode)

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
