"""Probing wave 8: Luigi pipelines written as their users write them, migrated by changing only `luigi.Task` to
`NixTask` (the legacy shape: own run() and output()), run with real Luigi (local scheduler) against a private
store. Each test is a bug that probing found, and fails on the code before its fix."""

from __future__ import annotations

import datetime
from pathlib import Path

import luigi

from luigi_nixworkflow import NixTask
from tests.luigi_run import build, note, runs


def failures(caplog: object) -> str:
    """What the log says of failed tasks: a traceback's exception, or nixworkflow's own error as one paragraph."""
    return "\n".join(str(r.exc_info[1]) if r.exc_info else r.getMessage()  # type: ignore[attr-defined]
                     for r in caplog.records if r.exc_info or r.levelname == "ERROR")  # type: ignore[attr-defined]


def test_a_temporary_local_target_runs_as_plain_luigi_runs_it(store_root: Path, caplog: object) -> None:
    """`LocalTarget(is_tmp=True)` names a new random path at each output() call (and is deleted when collected).
    Plain Luigi runs such a task every time; migrated, it failed every time with a false "run() returned without
    writing its declared output(s)" (run() wrote one random path, the check looked at another). Now it runs as a
    plain Luigi task, with a warning naming the temporary target, and nothing is stored for it."""

    class TmpOut(NixTask):
        def output(self) -> luigi.LocalTarget:
            return luigi.LocalTarget(is_tmp=True)

        def run(self) -> None:
            note("TmpOut")
            with self.output().open("w") as f:
                f.write("scratch\n")

    build(TmpOut())
    build(TmpOut())
    assert runs() == {"TmpOut": 2}
    assert "LocalTarget(is_tmp=True)" in caplog.text  # type: ignore[attr-defined]
    assert not list((store_root / "realisations").rglob("*.json"))


def test_an_output_path_that_changes_at_each_call_fails_saying_so(store_root: Path, caplog: object) -> None:
    """An output() path built from the clock: run() writes one path, the check looks at the next one. The error
    said run() had not written its output (it had); now it says output() returns a different path at each call,
    and nothing is stored."""

    class Stamped(NixTask):
        def output(self) -> luigi.LocalTarget:
            return luigi.LocalTarget(f"stamped-{datetime.datetime.now():%H%M%S%f}.txt")

        def run(self) -> None:
            with self.output().open("w") as f:
                f.write("s\n")

    build(Stamped(), ok=False)
    message = failures(caplog)
    assert "output() returns different paths at each call" in message and "stamped-" in message, message
    assert not list((store_root / "realisations").rglob("*.json"))
