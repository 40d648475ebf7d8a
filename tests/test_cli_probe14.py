"""CLI usage errors name only what is missing (fifteenth-session probe)."""

from __future__ import annotations

import pytest

from tests.helpers import nw


@pytest.mark.parametrize("command", ["run", "status", "dag"])
def test_missing_file_error_does_not_call_the_optional_targets_required(command: str) -> None:
    """`nw run` with no arguments said "the following arguments are required: file, TARGET", but the targets are
    optional (`nw run experiment.py` runs every step): argparse marks a nargs="*" positional without a default as
    required in that message."""
    proc = nw(command)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.endswith("the following arguments are required: file"), last
    assert "TARGET" not in last
