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


SCRIPTED = '''
import subprocess
import sys
import luigi
from luigi_nixworkflow import NixTask


class Train(NixTask):
    def output(self):
        return luigi.LocalTarget("out/model.txt")

    def run(self):
        self.output().makedirs()
        subprocess.run([sys.executable, "scripts/train.py", self.output().path], check=True)
'''

TRAIN = '''
import sys
import joblib_like
rows = open("data/train.csv").read().split()
joblib_like.dump(rows, "scripts/cache.bin")
open(sys.argv[1], "w").write(str(len(rows)))
'''


def test_a_data_file_a_script_the_task_runs_names_is_keyed_by_content() -> None:
    """A legacy task whose run() runs `scripts/train.py`, which reads `data/train.csv`: the script was keyed, not
    what it reads, so an edited data file served the old model. A path the script writes with a writer call
    (`joblib_like.dump(rows, "scripts/cache.bin")`, as `joblib.dump(m, p)`) keys nothing: the task stays cached."""
    Path("data").mkdir()
    Path("scripts").mkdir()
    Path("data/train.csv").write_text("a\nb\n")
    Path("scripts/train.py").write_text(TRAIN)
    Path("scripts/joblib_like.py").write_text("def dump(obj, path):\n    open(path, 'w').write(repr(obj))\n")
    Path("scripted.py").write_text(SCRIPTED)
    luigi_cli("--module", "scripted", "Train")
    assert Path("out/model.txt").read_text() == "2"
    again = luigi_cli("--module", "scripted", "Train")
    assert "1 complete ones were encountered" in again, again[-2000:]
    Path("data/train.csv").write_text("a\nb\nc\n")
    luigi_cli("--module", "scripted", "Train")
    assert Path("out/model.txt").read_text() == "3"  # (before: the stale "2")


CHANGES_DIR = '''
import os
import luigi
from luigi_nixworkflow import NixTask

HERE = os.path.dirname(os.path.abspath(__file__))


class Scored(NixTask):
    def command(self):
        return f"cd {HERE} && python3 score.py data/ref.tsv > {self.output()}/score"
'''


def test_a_command_that_changes_into_the_project_keys_the_files_it_names_relative_to_it() -> None:
    """`cd {HERE} && python3 score.py data/ref.tsv` (a command() runs in its output directory, so a project's
    command changes into the project first): neither score.py nor data/ref.tsv was keyed, so editing either served the
    old result, where nw run keys both."""
    Path("data").mkdir()
    Path("data/ref.tsv").write_text("b\na\n")
    Path("score.py").write_text("import sys\nprint(len(open(sys.argv[1]).read().split()))\n")
    Path("cd_cmd.py").write_text(CHANGES_DIR)
    luigi_cli("--module", "cd_cmd", "Scored")
    (out,) = Path("nix-workflow-output").glob("Scored*")
    assert (out / "score").read_text() == "2\n"
    Path("data/ref.tsv").write_text("c\nb\na\n")
    luigi_cli("--module", "cd_cmd", "Scored")
    assert (out / "score").read_text() == "3\n"  # (before: the stale "2")
    Path("score.py").write_text("import sys\nprint(10 * len(open(sys.argv[1]).read().split()))\n")
    luigi_cli("--module", "cd_cmd", "Scored")
    assert (out / "score").read_text() == "30\n"
