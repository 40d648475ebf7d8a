"""Environment specs: what a step runs with, and the identity that enters its recipe key.

This module holds the model shared by every front door. `resolve(spec)` turns a spec
into a ResolvedEnv: the identity (for the key) and the realised store paths (for PATH).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nixlib.recipe import HOST_ENV


@dataclass(frozen=True)
class ResolvedEnv:
    """An env after evaluation: `identity` enters the recipe key, `paths` go on the step's PATH."""

    identity: dict[str, Any]
    paths: tuple[str, ...] = ()

    @property
    def is_host(self) -> bool:
        return self.identity.get("kind") == "host"


HOST = ResolvedEnv(dict(HOST_ENV))


class Env:
    """Placeholder for the Nix-pinned env specs (issue: Nix-pinned runtimes)."""


def resolve(spec: Any) -> ResolvedEnv:
    """Resolve an env spec; None and "host" mean the host runtime (recorded as unpinned)."""
    if spec is None or spec == "host":
        return HOST
    raise TypeError(f"unsupported env spec {spec!r}")
