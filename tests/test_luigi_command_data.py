"""A Luigi command() that names a data file of the project by absolute path is keyed by its content, as a run()
that opens one is and as nw run keys one: editing it re-ran nothing (a stale result). Run with the real `luigi`
command, a new process per run (code digests are memoised per process)."""

from __future__ import annotations

from pathlib import Path

from tests.luigi_run import luigi_cli

PIPELINE = '''
import os
import luigi
from luigi_nixworkflow import NixTask

HERE = os.path.dirname(os.path.abspath(__file__))


class Sorted(NixTask):
    def command(self):
        return f"sort {HERE}/data/ref.tsv > {self.output()}/sorted; touch {HERE}/last-run.flag"
'''


def test_a_data_file_a_command_names_by_absolute_path_is_keyed_by_content() -> None:
    Path("data").mkdir()
    Path("data/ref.tsv").write_text("b\na\n")
    Path("cmd.py").write_text(PIPELINE)
    luigi_cli("--module", "cmd", "Sorted")
    (out,) = Path("nix-workflow-output").glob("Sorted*")  # (named after the task id)
    assert (out / "sorted").read_text() == "a\nb\n"
    Path("data/ref.tsv").write_text("c\nb\na\n")
    luigi_cli("--module", "cmd", "Sorted")
    assert (out / "sorted").read_text() == "a\nb\nc\n"  # (before: the stale "a\nb\n")
    again = luigi_cli("--module", "cmd", "Sorted")  # the flag the command touches keys nothing: complete
    assert "1 complete ones were encountered" in again, again[-2000:]
