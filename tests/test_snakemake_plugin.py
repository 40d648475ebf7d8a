"""Snakemake's own plugin test suites, run against the nixworkflow executor (in-process, Snakemake's API)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import configargparse
import pytest

pytest.importorskip("snakemake")

from snakemake.common.tests import TestWorkflowsLocalStorageBase  # noqa: E402
from snakemake_interface_common.plugin_registry.plugin import PluginBase, SettingsBase  # noqa: E402
from snakemake_interface_common.plugin_registry.tests import TestRegistryBase  # noqa: E402
from snakemake_interface_executor_plugins.registry import ExecutorPluginRegistry  # noqa: E402

from snakemake_executor_nixworkflow import ExecutorSettings  # noqa: E402
from snakemake_executor_nixworkflow.executor import Executor  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


class TestRegistry(TestRegistryBase):
    """The plugin is found by its module prefix, validates, and its settings map to --nixworkflow-* options."""

    __test__ = True

    def get_registry(self) -> ExecutorPluginRegistry:
        return ExecutorPluginRegistry()

    def get_test_plugin_name(self) -> str:
        return "nixworkflow"

    def validate_plugin(self, plugin: PluginBase) -> None:
        assert plugin.executor is Executor
        assert plugin.common_settings.local_exec
        assert plugin.settings_cls is ExecutorSettings

    def validate_settings(self, settings: SettingsBase, plugin: PluginBase) -> None:
        assert isinstance(settings, ExecutorSettings)
        assert settings.link_mode == "copy"
        assert settings.pure is True
        assert settings.store == Path("/tmp/some-store")
        assert settings.env == "train"
        assert settings.sandbox is False

    def test_registry_register_cli_args(self) -> None:
        """Our options all carry the --nixworkflow- prefix. (The base test registers every installed plugin's
        options and expects them all to carry ours, which fails as soon as a second executor plugin, such as the
        Slurm plugin the backend wraps, is installed.)"""
        registry = self.get_registry()
        plugin = registry.get_plugin(self.get_test_plugin_name())
        parser = configargparse.ArgumentParser()
        plugin.register_cli_args(parser, registry.get_plugin_type())
        dests = [a.dest for a in parser._actions if a.dest != "help"]
        assert dests and all(d.startswith("nixworkflow_") for d in dests), dests

    def get_example_args(self) -> list[str]:
        return ["--nixworkflow-link-mode", "copy", "--nixworkflow-pure", "--nixworkflow-store", "/tmp/some-store",
                "--nixworkflow-env", "train"]


class TestWorkflows(TestWorkflowsLocalStorageBase):
    """Snakemake's standard workflows (simple, groups) run through the engine and leave a filled store."""

    __test__ = True

    def get_executor(self) -> str:
        return "nixworkflow"

    def get_executor_settings(self) -> ExecutorSettings:
        return ExecutorSettings()

    def cleanup_test(self) -> None:
        root = Path(_store_root())
        assert any((root / "realisations").iterdir()), "the workflow's jobs left no realisation in the store"


def _store_root() -> str:
    import os

    return os.environ["NIX_WORKFLOW_STORE"]


def test_settings_have_help_defaults_and_env_vars() -> None:
    """Every setting is documented, optional, and settable from the environment (SNAKEMAKE_NIXWORKFLOW_*) except
    the backend: batch jobs inherit the submitting shell's environment, and a node must never submit again."""
    for f in dataclasses.fields(ExecutorSettings):
        assert f.metadata["help"]
        assert f.default is not dataclasses.MISSING
        assert f.metadata.get("env_var") is (f.name != "backend"), f.name
