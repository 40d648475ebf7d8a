"""nixworkflow's engine: Nix-pinned runtimes, lineage and content-addressed caching for pipelines.

`from nixlib import output, static, Env` is the Python front door; the names are loaded
lazily so that `nw --help` and the adapters import only what they use.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["output", "static", "Env"]


def __getattr__(name: str) -> Any:
    if name in ("output", "static"):
        from nixlib import dsl

        return getattr(dsl, name)
    if name == "Env":
        from nixlib.env import Env

        return Env
    raise AttributeError(f"module 'nixlib' has no attribute {name!r}")
