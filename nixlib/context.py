"""Placeholders and the reference scanner: how interpolation creates dependencies.

A step's output is known before it exists only as a *placeholder*: a path-like token
`<store root>/store/<32 nix32 chars>-<name>`. Any string operation (f-strings, `.format`,
`%`, `+`, Nix `${}`) copies the token verbatim, so scanning a command for tokens recovers
every dependency without the user declaring it. Realised objects appear as
`<store root>/store/<52 nix32 chars>` and are references too: they are content-addressed
inputs (static files, pinned results).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Generic, TypeVar

from nixlib import base32

T = TypeVar("T")

_NIX32 = f"[{base32.ALPHABET}]"
_NAME_RE = re.compile(r"[A-Za-z0-9_+?=.-]*")


def placeholder_hash(identity: str) -> str:
    """32 nix32 characters naming a not-yet-realised output, folded like a Nix store path hash."""
    return base32.encode(base32.fold(hashlib.sha256(identity.encode()).digest()))


def safe_name(name: str) -> str:
    """A step name as it may appear in a path token (Nix's store-name characters)."""
    cleaned = re.sub(r"[^A-Za-z0-9_+?=.-]", "-", name).strip("-.") or "step"
    return cleaned[:200]


def placeholder(root: str, identity: str, name: str) -> tuple[str, str]:
    """Mint (token, hash32) for a step; the token is what interpolation copies around."""
    h = placeholder_hash(identity)
    return f"{root}/store/{h}-{safe_name(name)}", h


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
        self._re = re.compile(re.escape(self.root) + rf"/store/({_NIX32}{{52}}(?!{_NIX32})|{_NIX32}{{32}}-)")

    def register(self, hash32: str, name: str, target: T) -> None:
        self.targets[hash32] = (safe_name(name), target)

    def scan(self, text: str) -> list[Ref[T]]:
        """Every reference in `text`, in order; raises UnknownPlaceholder for foreign tokens."""
        refs: list[Ref[T]] = []
        for m in self._re.finditer(text):
            found = m.group(1)
            if not found.endswith("-"):
                refs.append(Ref(m.start(), m.end(), m.group(0), obj=found))
                continue
            known = self.targets.get(found[:-1])
            if known is None or not text.startswith(known[0], m.end()):
                name = _NAME_RE.match(text, m.end())
                raise UnknownPlaceholder(m.group(0) + (name.group(0) if name else ""))
            end = m.end() + len(known[0])
            refs.append(Ref(m.start(), end, text[m.start() : end], target=known[1]))
        return refs
