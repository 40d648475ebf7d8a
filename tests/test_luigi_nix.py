"""NixTasks with Nix-pinned envs from nixworkflow.yaml, through the real Nix (a local package set)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import luigi
import pytest
from luigi.task_register import Register

import luigi_nixworkflow
from luigi_nixworkflow import NixTask
from tests import nixsets
from tests.nixcheck import require_nix

pytestmark = pytest.mark.nix

CONFIG = """\
nixpkgs: {{path: {pkgs}}}
env:
  packages: [greet]
envs:
  hello:
    packages: [hello]
    pure: true
"""


class Greets(NixTask):
    """No env of its own: the default env of nixworkflow.yaml."""

    def command(self) -> str:
        return f"greet > {self.output()}/said"


class HelloInPython(NixTask):
    """A Python step: the env pins the tools it starts, not the interpreter running it."""

    env = "hello"

    def produce(self, out: Path) -> None:
        said = subprocess.run(["hello"], capture_output=True, text=True, check=True).stdout
        (out / "said").write_text(said + os.environ["PATH"])


@pytest.fixture(autouse=True)
def fresh_luigi() -> None:
    Register.clear_instance_cache()
    luigi_nixworkflow.reset()


def test_envs_from_nixworkflow_yaml_pin_commands_and_python_subprocesses(tmp_path: Path) -> None:
    require_nix("nix-instantiate")
    pkgs = nixsets.package_set(tmp_path / "pkgs", {"hello": "1.0", "greet": "1.0"})
    Path("nixworkflow.yaml").write_text(CONFIG.format(pkgs=pkgs))
    assert luigi.build([Greets(), HelloInPython()], local_scheduler=True, log_level="WARNING")
    assert (Greets().output() / "said").open().read() == "greet 1.0\n"
    said, path = (HelloInPython().output() / "said").open().read().split("\n", 1)
    assert said == "hello 1.0" and path.startswith("/nix/store/") and path.endswith("-hello/bin")
    greets = Greets().nix_recipe()
    assert greets is not None and greets.env["kind"] == "nix" and not greets.options.pure
    recipe = HelloInPython().nix_recipe()
    assert recipe is not None and recipe.options.pure  # the env's yaml entry sets pure: true
    old_key = greets.key

    nixsets.package_set(pkgs, {"hello": "1.0", "greet": "2.0"})  # a new greet: only Greets re-keys
    Register.clear_instance_cache()
    luigi_nixworkflow.reset()
    new = Greets().nix_recipe()
    assert new is not None and new.key != old_key and not Greets().complete()
    assert HelloInPython().complete()


class HelloLegacy(NixTask):
    """The plain Luigi shape (issue 10): its own run() and output(), the env's tools on PATH while it runs."""

    env = "hello"

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget("said.txt")

    def run(self) -> None:
        said = subprocess.run(["hello"], capture_output=True, text=True, check=True).stdout
        with self.output().open("w") as f:
            f.write(said + os.environ["PATH"])


def test_legacy_run_has_the_envs_tools_on_path(tmp_path: Path) -> None:
    require_nix("nix-instantiate")
    pkgs = nixsets.package_set(tmp_path / "pkgs", {"hello": "1.0", "greet": "1.0"})
    Path("nixworkflow.yaml").write_text(CONFIG.format(pkgs=pkgs))
    assert luigi.build([HelloLegacy()], local_scheduler=True, log_level="WARNING")
    said, path = Path("said.txt").read_text().split("\n", 1)
    assert said == "hello 1.0" and path.startswith("/nix/store/") and path.endswith("-hello/bin")
    recipe = HelloLegacy().nix_recipe()
    assert recipe is not None and recipe.env["kind"] == "nix"
