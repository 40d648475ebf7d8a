"""One rule for tests that need the real Nix CLI: skip when it is missing, unless CI says it must be there."""

from __future__ import annotations

import os
import shutil

import pytest

INSTALL_HINT = "install Nix (Debian/Ubuntu: apt-get install nix-bin)"


def require_nix(tool: str = "nix-hash") -> str:
    """Path of the Nix tool `tool`; skips the test without it, or fails it when NW_REQUIRE_NIX=1."""
    path = shutil.which(tool)
    if path:
        return path
    reason = f"{tool} is not on PATH: {INSTALL_HINT}"
    if os.environ.get("NW_REQUIRE_NIX") == "1":
        pytest.fail(f"{reason} (NW_REQUIRE_NIX=1 makes a missing Nix a failure)")
    pytest.skip(reason)
