"""CLI usage errors name only what is missing (fifteenth-session probe)."""

from __future__ import annotations

import json

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


def test_a_static_used_twice_in_one_command_is_one_input(tmp_path, store_root) -> None:
    """`cat {raw} ...; wc -l {raw}`: the record listed the static input once per occurrence in the command, and
    `nw lineage` showed it twice under the step (the key was right: it is made from the command text)."""
    (tmp_path / "data.csv").write_text("a,b\n")
    (tmp_path / "e.py").write_text('from nixlib import output, static\nraw = static("data.csv")\n'
                                   'prep = output(f"cat {raw} > $out/x.csv; wc -l {raw} >> $out/x.csv")\n')
    nw("run", "e.py", cwd=tmp_path, check=True)
    record = json.loads(nw("show", "prep", "--json", cwd=tmp_path, check=True).stdout)
    inputs = record.get("inputs", record.get("record", {}).get("inputs"))
    assert len(inputs) == 1, inputs
    lineage = nw("lineage", "prep", cwd=tmp_path, check=True).stdout
    assert lineage.count("static (static)") == 1, lineage
