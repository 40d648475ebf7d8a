"""Bad input to the Luigi adapter: a clear error naming what to fix, and the store unchanged."""

from __future__ import annotations

from pathlib import Path

import luigi
import pytest
from luigi.task_register import Register

import luigi_nixworkflow
from luigi_nixworkflow import NixTask
from nixlib import Env
from nixlib.errors import NixWorkflowError
from nixlib.store import Store
from tests.helpers import tree_snapshot


@pytest.fixture(autouse=True)
def fresh_luigi(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NIX_WORKFLOW_ALLOW_UNPINNED", raising=False)
    Register.clear_instance_cache()
    luigi_nixworkflow.reset()


@pytest.fixture
def store(store_root: Path) -> Path:
    Store(store_root)  # the layout exists; "unchanged" means no record, object or log appears
    return store_root


def refused(task: luigi.Task, store: Path, match: str) -> None:
    """complete() raises a NixWorkflowError matching `match`; luigi.build fails; the store is unchanged."""
    before = tree_snapshot(store)
    with pytest.raises(NixWorkflowError, match=match):
        task.complete()
    Register.clear_instance_cache()
    luigi_nixworkflow.reset()
    assert not luigi.build([task], local_scheduler=True, log_level="CRITICAL")
    assert tree_snapshot(store) == before


class Opaque:
    """A value with no canonical serialisation (its repr has an address)."""


class WithObjectParam(NixTask):
    thing = luigi.Parameter()

    def command(self) -> str:
        return f"echo {self.thing} > {self.output()}/x"


def test_non_serialisable_parameter_is_named(store: Path) -> None:
    refused(WithObjectParam(thing=Opaque()), store, "parameter 'thing' has a value of type Opaque")


def test_typed_parameters_serialise_canonically(store: Path) -> None:
    class Dated(NixTask):
        day = luigi.DateParameter()
        opts = luigi.DictParameter()

        def command(self) -> str:
            return f"echo {self.day} > {self.output()}/x"

    import datetime

    a = Dated(day=datetime.date(2024, 1, 2), opts={"b": 1, "a": [1, 2]}).nix_recipe()
    b = Dated(day=datetime.date(2024, 1, 2), opts={"a": [1, 2], "b": 1}).nix_recipe()
    assert a is not None and b is not None and a.key == b.key
    c = Dated(day=datetime.date(2024, 1, 3), opts={"a": [1, 2], "b": 1}).nix_recipe()
    assert c is not None and c.key != a.key


class NamedEnv(NixTask):
    env = "gpu-cluster"

    def command(self) -> str:
        return f"echo hi > {self.output()}/x"


def test_unknown_env_name(store: Path) -> None:
    refused(NamedEnv(), store, "gpu-cluster")


class Unpinned(NixTask):
    env = Env(packages=["hello"])  # <nixpkgs>: a channel, not a pin

    def command(self) -> str:
        return f"hello > {self.output()}/x"


def test_unpinned_env(store: Path) -> None:
    refused(Unpinned(), store, "not pinned")


class Ghostly(NixTask):
    def command(self) -> str:  # a placeholder no task of this process minted (pasted from another run)
        ghost = f"{luigi_nixworkflow.settings.store_root()}/store/{'0' * 32}-Ghost"
        return f"cat {ghost}/v > {self.output()}/x"


def test_reference_the_scanner_cannot_resolve(store: Path) -> None:
    refused(Ghostly(), store, "references .*-Ghost, which is the output of no task known")


class MissingObject(NixTask):
    def command(self) -> str:
        return f"cat {luigi_nixworkflow.settings.store_root()}/store/{'1' * 52} > {self.output()}/x"


def test_reference_to_an_object_not_in_the_store(store: Path) -> None:
    refused(MissingObject(), store, "not in the store")


class Unquoted(NixTask):
    def command(self) -> str:
        return f"echo 'oops > {self.output()}/x"


def test_unterminated_quote(store: Path) -> None:
    refused(Unquoted(), store, "Unquoted.*command\\(\\).*line 1")


class NotAString(NixTask):
    def command(self) -> str:
        return ["echo", "hi"]  # type: ignore[return-value]


def test_command_must_be_a_string(store: Path) -> None:
    refused(NotAString(), store, "must return a shell string")


def test_both_or_neither_step_kind(store: Path) -> None:
    class Both(NixTask):
        def command(self) -> str:
            return "true"

        def produce(self, out: Path) -> None:
            pass

    refused(Both(), store, "exactly one of command\\(\\).*both")


def test_run_with_command_is_a_clear_error(store: Path) -> None:
    """run() is the plain Luigi shape (issue 10): it cannot be mixed with command()."""

    class RunAndCommand(NixTask):
        def output(self) -> luigi.LocalTarget:
            return luigi.LocalTarget("x")

        def run(self) -> None:
            pass

        def command(self) -> str:
            return "true"

    refused(RunAndCommand(), store, "defines run\\(\\) and command\\(\\): keep one")


def test_code_inspect_cannot_see_needs_a_version(store: Path) -> None:
    namespace: dict = {"NixTask": NixTask, "__name__": "generated"}
    exec("class FromExec(NixTask):\n    def command(self):\n        return 'true'\n", namespace)
    refused(namespace["FromExec"](), store, "cannot read the source code of task class FromExec.*version")
    exec("class Versioned(NixTask):\n    version = '1'\n    def command(self):\n        return 'true'\n",
         namespace)
    assert namespace["Versioned"]().nix_recipe() is not None


CONFIG = """\
envs:
  legacy: host
steps:
  Mapped: legacy
"""


class Mapped(NixTask):
    def command(self) -> str:
        return f"echo mapped > {self.output()}/x"


class NamedLegacy(NixTask):
    env = "legacy"

    def command(self) -> str:
        return f"echo named > {self.output()}/x"


def test_env_names_come_from_nixworkflow_yaml(store: Path) -> None:
    Path("nixworkflow.yaml").write_text(CONFIG)
    assert luigi.build([Mapped(), NamedLegacy()], local_scheduler=True, log_level="CRITICAL")
    origin = luigi_nixworkflow.settings.choose_env(Mapped).origin
    assert origin.startswith("env 'legacy' of ") and origin.endswith("nixworkflow.yaml")
    refused(NamedEnv(), store, "no env named 'gpu-cluster' \\(envs: legacy\\)")


def test_malformed_nixworkflow_yaml_names_the_line(store: Path) -> None:
    Path("nixworkflow.yaml").write_text("envs:\n  legacy: host\n  train:\n    pakages: [torch]\n")
    refused(NamedLegacy(), store, "nixworkflow.yaml:4: envs.train.pakages: unknown key")
