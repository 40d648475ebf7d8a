"""Placeholders and the reference scanner: how interpolation creates dependencies.

A step's output is known before it exists only as a *placeholder*: a path-like token
`<store root>/placeholders/<32 nix32 chars>-<name>`. Any string operation (f-strings, `.format`,
`%`, `+`, Nix `${}`) copies the token verbatim, so scanning a command for tokens recovers
every dependency without the user declaring it. Realised objects appear as
`<store root>/store/<52 nix32 chars>` and are references too: they are content-addressed
inputs (static files, pinned results).

A placeholder looks like a path, so code will try to write to it (`open(target.path, "w")`).
It must never name a location inside `store/` (only ingest creates entries there) nor any
location that can be created: `<store root>/placeholders` is an empty, read-only *regular file*
(`seal_placeholders`), so opening or creating anything beneath it fails with ENOTDIR, for root
too. Tokens of the old form `<store root>/store/<32 chars>-<name>` are still recognised, as
unknown placeholders: nothing mints them any more.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import stat
from dataclasses import dataclass
from typing import Generic, TypeVar

from nixlib import base32
from nixlib.errors import NixWorkflowError

T = TypeVar("T")

_NIX32 = f"[{base32.ALPHABET}]"
_NAME_RE = re.compile(r"[A-Za-z0-9_+?=.-]*")
PLACEHOLDERS = "placeholders"  # a regular file in the store root; tokens are paths beneath it


def placeholder_hash(identity: str) -> str:
    """32 nix32 characters naming a not-yet-realised output, folded like a Nix store path hash."""
    return base32.encode(base32.fold(hashlib.sha256(identity.encode()).digest()))


@functools.lru_cache(maxsize=4096)
def safe_name(name: str) -> str:
    """A step name as it may appear in a path token (Nix's store-name characters)."""
    cleaned = re.sub(r"[^A-Za-z0-9_+?=.-]", "-", name).strip("-.") or "step"
    return cleaned[:200]


def placeholder(root: str, identity: str, name: str) -> tuple[str, str]:
    """Mint (token, hash32) for a step; the token is what interpolation copies around."""
    h = placeholder_hash(identity)
    return f"{root}/{PLACEHOLDERS}/{h}-{safe_name(name)}", h


def seal_placeholders(root: str | os.PathLike[str]) -> None:
    """Make `<root>/placeholders` an empty read-only regular file, so no placeholder is a writable path.

    Called where the store's layout is made. Creating a file or directory beneath a regular file
    fails with ENOTDIR whoever tries; an empty directory left there (by code that wrote to a
    placeholder before the store existed) is replaced, anything else is an error to fix by hand."""
    path = os.path.join(root, PLACEHOLDERS)
    for _ in range(2):
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444))
            except FileExistsError:
                continue  # another process made it first: check what it made
            return
        if stat.S_ISREG(st.st_mode) and st.st_size == 0:
            return
        if stat.S_ISDIR(st.st_mode):
            with contextlib.suppress(OSError):
                os.rmdir(path)
                continue
        break
    raise NixWorkflowError(
        f"{path} must be an empty regular file (it makes placeholder paths unwritable), but something else is "
        "there, probably written by code that used a placeholder as a path. Move it away and run again."
    )


@dataclass(frozen=True)
class Ref(Generic[T]):
    """One reference found in a string: to a registered step (`target`) or to an object hash."""

    start: int
    end: int
    token: str
    target: T | None = None
    obj: str | None = None


class UnknownPlaceholder(ValueError):
    """A placeholder-shaped token that no step in this run minted."""

    def __init__(self, token: str) -> None:
        self.token = token
        super().__init__(token)


class Scanner(Generic[T]):
    """Finds placeholders of registered targets and object paths under one store root."""

    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/")
        self.targets: dict[str, tuple[str, T]] = {}
        # group 1: an object (52 chars); group 2: a placeholder hash (current form, or the old one under
        # store/, which nothing mints any more and so is always an unknown placeholder)
        self._re = re.compile(re.escape(self.root) + rf"/(?:store/({_NIX32}{{52}})(?!{_NIX32})|"
                              rf"{PLACEHOLDERS}/({_NIX32}{{32}})-|store/({_NIX32}{{32}})-)")

    def register(self, hash32: str, name: str, target: T) -> None:
        self.targets[hash32] = (safe_name(name), target)

    def scan(self, text: str) -> list[Ref[T]]:
        """Every reference in `text`, in order; raises UnknownPlaceholder for foreign tokens."""
        refs: list[Ref[T]] = []
        for m in self._re.finditer(text):
            if m.group(1) is not None:
                refs.append(Ref(m.start(), m.end(), m.group(0), obj=m.group(1)))
                continue
            known = self.targets.get(m.group(2)) if m.group(2) is not None else None
            if known is None or not text.startswith(known[0], m.end()):
                name = _NAME_RE.match(text, m.end())
                raise UnknownPlaceholder(m.group(0) + (name.group(0) if name else ""))
            end = m.end() + len(known[0])
            refs.append(Ref(m.start(), end, text[m.start() : end], target=known[1]))
        return refs
