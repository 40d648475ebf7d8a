"""Static inputs (a file or directory used by content, every front door's `static()`): what is hashed and copied.

A static input's store copy must hold the bytes its key names. A symlink is stored as Nix stores one, as the
link itself: for `data.csv -> /shared/data_v3.csv` that copy is a link to live data, so an edit of the data
changed what the step read while its key (the link's text) stayed, and the old result was served. So a
symlinked static input is taken as the data it points to, and a directory whose links point out of it is
refused: its copy would hold links that dangle or name data that can change behind the key. Links within the
directory, and into the Nix store (immutable), are kept as they are.
"""

from __future__ import annotations

import os
from pathlib import Path

from nixlib.errors import NixWorkflowError
from nixlib.statmemo import StatMemo


def content(memo: StatMemo, written: str | os.PathLike, where: str = "") -> tuple[Path, str]:
    """(the path to copy into the store, its NAR hash) for a static input named `written`, which exists; `where`
    (FILE:LINE of the static() call) starts an error."""
    real = os.path.realpath(written)
    links: list[bytes] = []
    h = memo.checked(real, links=links)[0]
    for rel in map(os.fsdecode, links):
        target = os.path.realpath(os.path.join(real, rel))
        if target == real or target.startswith((real + os.sep, "/nix/store/")):
            continue
        raise NixWorkflowError(
            f"{where + ': ' if where else ''}static input {written}: {rel} is a symlink to {target}, outside it. Its "
            "store copy would hold only the link, not the data it points to (which can change behind the key). Copy "
            "the data into the directory, or pass the linked path to static() itself.")
    return Path(real), h


def link_hint(written: str | os.PathLike) -> str:
    """For a pinned hash that does not match: a symlinked input is hashed as the data it points to."""
    if not os.path.islink(written):
        return ""
    return (f" ({written} is a symlink: static() uses the data it points to, `nw hash {os.path.realpath(written)}`; "
            "a hash of the link itself names no data)")
