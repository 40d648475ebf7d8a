"""A step that leaves its declared output empty fails, names itself and says how to allow it (issue 8, item 2).

`$out` exists before a step runs, so before this check a step that wrote nothing was cached as done
and the failure surfaced downstream as a misleading "No such file".
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO, nw
from tests.nixcheck import require_nix

LIB = "inherit ((import <nixworkflow>).lib) output static;"


def realisations(store_root: Path) -> list[dict]:
    folder = store_root / "realisations"
    return [json.loads(p.read_text()) for p in folder.iterdir()] if folder.exists() else []


def write(name: str, text: str) -> Path:
    path = Path(name)
    path.write_text(text)
    return path


def assert_empty_failure(proc: subprocess.CompletedProcess[str], step: str, hint: str) -> None:
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"step '{step}' failed" in proc.stderr and "is empty" in proc.stderr and hint in proc.stderr


def test_step_that_writes_nothing_fails_is_not_stored_and_runs_again(store_root: Path) -> None:
    write("experiment.py", "from nixlib import output\nempty = output('true')\n")
    first = nw("run", "experiment.py")
    assert_empty_failure(first, "empty", "allow_empty=True")
    assert "a directory with no entries" in first.stderr
    assert realisations(store_root) == []
    assert not os.path.lexists("nix-workflow-output/empty")
    second = nw("run", "experiment.py")
    assert_empty_failure(second, "empty", "allow_empty=True")
    assert "nw: empty: running" in second.stderr and "cached 0" in second.stderr  # ran again, not served


def test_zero_byte_file_output_fails(store_root: Path) -> None:
    write("experiment.py", "from nixlib import output\nblank = output('rmdir $out && : > $out')\n")
    proc = nw("run", "experiment.py")
    assert_empty_failure(proc, "blank", "allow_empty=True")
    assert "a zero-byte file" in proc.stderr
    assert realisations(store_root) == []


def test_downstream_of_an_empty_step_is_skipped_with_the_real_cause(store_root: Path) -> None:
    write("experiment.py", "from nixlib import output\n"
          "counts = output('true')\n"
          "total = output(f'wc -l < {counts}/counts.tsv > $out/total')\n")
    proc = nw("run", "experiment.py")
    assert_empty_failure(proc, "counts", "allow_empty=True")
    assert "No such file" not in proc.stderr
    assert "skipped: it depends on 'counts', which failed" in proc.stderr
    assert realisations(store_root) == []


def test_allow_empty_stores_the_empty_output_and_serves_it(store_root: Path) -> None:
    write("experiment.py", "from nixlib import output\nmarker = output('true', allow_empty=True)\n")
    nw("run", "experiment.py", check=True)
    (doc,) = realisations(store_root)
    assert doc["name"] == "marker"
    assert os.listdir(store_root / "store" / doc["outputs"]["out"]) == []
    again = nw("run", "experiment.py", check=True)
    assert "cached 1" in again.stderr


def test_an_allowed_empty_result_is_never_served_to_a_strict_step(store_root: Path) -> None:
    """Same command, one step allowing empty output and one not: the strict one must still fail."""
    write("allowed.py", "from nixlib import output\nmarker = output('true', allow_empty=True)\n")
    nw("run", "allowed.py", check=True)
    write("strict.py", "from nixlib import output\nmarker = output('true')\n")
    proc = nw("run", "strict.py")
    assert_empty_failure(proc, "marker", "allow_empty=True")
    assert len(realisations(store_root)) == 1


def test_nix_experiment_empty_output_fails_unless_allow_empty(store_root: Path) -> None:
    require_nix("nix-instantiate")
    write("strict.nix", f"let {LIB} in {{ empty = output \"true\"; }}\n")
    proc = nw("run", "strict.nix")
    assert_empty_failure(proc, "empty", "allowEmpty = true;")
    assert realisations(store_root) == []

    write("allowed.nix", f"let {LIB} in {{ marker = output {{ cmd = \"true\"; allowEmpty = true; }}; }}\n")
    nw("run", "allowed.nix", check=True)
    assert [d["name"] for d in realisations(store_root)] == ["marker"]

    write("typo.nix", f"let {LIB} in {{ marker = output {{ cmd = \"true\"; allow_empty = true; }}; }}\n")
    typo = nw("run", "typo.nix")
    assert typo.returncode == 1 and "allow_empty" in typo.stderr and "allowEmpty" in typo.stderr


SNAKEFILE = '''
rule all:
    input: "flag", "empty.txt"

rule flag:
    output: touch("flag")
    shell: 'echo flag >> "$NW_TEST_LOG"'

rule empty:
    output: "empty.txt"
    shell: 'echo empty >> "$NW_TEST_LOG"; : > {output}'
'''


def test_snakemake_keeps_its_own_semantics_empty_files_are_valid_outputs(tmp_path: Path, store_root: Path) -> None:
    """Snakemake decides what a job must produce: touch() and empty files are cached and restored."""
    pytest.importorskip("snakemake")
    runs = tmp_path / "runs.log"
    for clone in ("one", "two"):
        wf = tmp_path / clone
        wf.mkdir()
        (wf / "Snakefile").write_text(SNAKEFILE)
        proc = subprocess.run([sys.executable, "-m", "snakemake", "-c", "1", "--nocolor", "--executor", "nixworkflow"],
                              cwd=wf, env=dict(os.environ, PYTHONPATH=str(REPO), NW_TEST_LOG=str(runs)), text=True,
                              capture_output=True, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "could not be stored" not in proc.stdout + proc.stderr
        assert (wf / "flag").read_bytes() == b"" and (wf / "empty.txt").read_bytes() == b""
    assert sorted(runs.read_text().split()) == ["empty", "flag"]  # the second clone ran nothing
    assert {d["name"] for d in realisations(store_root)} == {"flag", "empty"}
