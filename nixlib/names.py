"""The one rule for step names, checked by every front door where a step is defined.

A step name becomes the output link `nix-workflow-output/NAME`, a key of the last-run summary and an
argument of `nw show/lineage/log`, so it must be one plain file name: a name that is empty, `.`/`..`,
absolute or containing `/` would point a link outside its directory (or at a user's file), and NUL cannot
be in a path at all; a control character (a newline) breaks every line-oriented output that names it.
Nested member names such as `models.small` are plain file names and stay valid.
"""

from __future__ import annotations

import re
from typing import Any

from nixlib.errors import NixWorkflowError

RESERVED_PREFIX = ".nw-"  # the engine's own files in the output-link directory (`.nw-last-run.json`)
MAX_BYTES = 255  # NAME_MAX of Linux and macOS file systems: a longer link cannot be created
_CONTROL = re.compile("[\x00-\x1f\x7f]")  # (one regex search: every Luigi task's id is checked per build)


def name_problem(name: Any) -> str | None:
    """Why `name` cannot be a step name, or None if it can."""
    if not isinstance(name, str):
        return f"it is of type {type(name).__name__}, not a string"
    if name == "":
        return "it is empty"
    if name in (".", ".."):
        return f"'{name}' names a directory, not a file"
    if "\0" in name:
        return "it contains a NUL character"
    if _CONTROL.search(name):  # a newline would split `nw dag`/`show` lines and links
        return "it contains a control character (a newline, tab or the like)"
    if name.startswith("/"):
        return "it is an absolute path"
    if "/" in name:
        return "it contains '/'"
    if name.startswith(RESERVED_PREFIX):
        return f"names starting with '{RESERVED_PREFIX}' are reserved for nixworkflow's own files"
    if len(name.encode("utf-8", "surrogateescape")) > MAX_BYTES:
        return f"it is longer than {MAX_BYTES} bytes, the longest file name a file system allows"
    return None


def check_step_name(name: Any, where: str | None = None) -> str:
    """`name` if it is a valid step name; else a NixWorkflowError naming it and `where` (file:line, task...)."""
    problem = name_problem(name)
    if problem is None:
        return name
    prefix = f"{where}: " if where else ""
    shown = repr(name) if len(repr(name)) <= 300 else repr(name)[:297] + "..."
    raise NixWorkflowError(
        f"{prefix}step name {shown} is not allowed: {problem}. A step's name becomes its output link "
        "nix-workflow-output/NAME, so it must be a plain file name: not empty, not '.' or '..', with no '/' and "
        "no NUL or other control character (dotted names such as models.small are fine). Rename the step."
    )
