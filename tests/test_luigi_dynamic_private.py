"""A yielded task's private parameter (`visibility=PRIVATE`, a password) is in no record: the yielding task's
provenance lists what it yielded (Luigi's to_str_params leaves private values out), and `nw push` copies records
to a remote. Such a task cannot be found again from the record, so the yielding task is not served from the store:
it runs again (never stale). A hidden parameter is recorded, so its result is served."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import luigi
from luigi.parameter import ParameterVisibility

from luigi_nixworkflow import NixTask
from tests.luigi_run import build, note, runs


class Login(luigi.ExternalTask):
    user = luigi.Parameter()
    password = luigi.Parameter(visibility=ParameterVisibility.PRIVATE)
    hidden = luigi.Parameter(default="h", visibility=ParameterVisibility.HIDDEN)

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget(f"session_{self.user}.txt")


class Session(NixTask):
    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget("session_copy.txt")

    def run(self) -> Iterator[luigi.Task]:
        login = yield Login(user="ann", password="hunter2-secret")
        note("Session")
        with self.output().open("w") as f:
            f.write(Path(login.path).read_text())


class Plain(luigi.ExternalTask):
    hidden = luigi.Parameter(default="h", visibility=ParameterVisibility.HIDDEN)

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget("plain.txt")


class UsesPlain(NixTask):
    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget("plain_copy.txt")

    def run(self) -> Iterator[luigi.Task]:
        plain = yield Plain()
        note("UsesPlain")
        with self.output().open("w") as f:
            f.write(Path(plain.path).read_text())


def test_a_yielded_private_parameter_is_in_no_record_and_its_task_runs_again(store_root: Path) -> None:
    Path("session_ann.txt").write_text("token\n")
    build(Session())
    assert Path("session_copy.txt").read_text() == "token\n"
    for path in (store_root / "realisations").rglob("*.json"):
        assert "hunter2-secret" not in path.read_text(), path
    build(Session())
    assert runs()["Session"] == 2  # not served: the yielded task cannot be checked without its password


def test_a_hidden_parameter_still_lets_the_result_be_served(store_root: Path) -> None:
    Path("plain.txt").write_text("p\n")
    build(UsesPlain())
    build(UsesPlain())
    assert runs()["UsesPlain"] == 1 and Path("plain_copy.txt").read_text() == "p\n"
