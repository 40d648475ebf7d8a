"""Finding the real Nix tools: a missing Nix skips a test, or fails it when NW_REQUIRE_NIX=1 (CI)."""

from __future__ import annotations

import os
import shutil

import pytest


def require_nix(tool: str = "nix-hash") -> str:
    """Path of a Nix CLI tool; skip (or fail under NW_REQUIRE_NIX=1) when it is not installed."""
    path = shutil.which(tool)
    if path:
        return path
    message = f"{tool} not found: install Nix (Debian: apt-get install nix-bin)"
    if os.environ.get("NW_REQUIRE_NIX") == "1":
        pytest.fail(message + " — NW_REQUIRE_NIX=1 makes a missing Nix a failure")
    pytest.skip(message)
