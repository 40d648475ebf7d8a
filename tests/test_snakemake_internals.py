"""One test per assumption snakemake_executor_nixworkflow/internals.py makes about Snakemake's internals:
a Snakemake release that changes one fails here by name (the CLI tests show the behaviour end to end)."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from snakemake_executor_nixworkflow import internals

pytest.importorskip("snakemake")


def test_static_resource_reads_literals_and_leaves_functions_unevaluated() -> None:
    from snakemake.resources import Resources

    calls = []
    resources = Resources.from_mapping({"nix_env": "train", "test": lambda wc: calls.append(wc) or 1})
    rule = SimpleNamespace(resources=resources)
    assert internals.static_resource(rule, "nix_env") == "train"
    assert internals.static_resource(rule, "test") is None
    assert internals.static_resource(rule, "absent") is None
    assert calls == [], "a resource function must not be evaluated at start-up"


def test_snakemake_keeps_a_directory_symlinks_mtime_on_the_link(tmp_path: Path) -> None:
    """Snakemake's own touch of a directory() output that is a symlink writes nothing through the link."""
    from snakemake.io import IOFile, directory

    target = tmp_path / "target"
    target.mkdir()
    link = tmp_path / "link"
    link.symlink_to(target)
    f = IOFile(str(directory(str(link))))
    f.flags["directory"] = True
    f.touch()
    assert os.listdir(target) == []
    assert not internals.carries_timestamp(str(link))
    assert internals.carries_timestamp(str(target))


def test_forced_reads_the_dags_reason() -> None:
    from snakemake.jobs import Reason

    reason = Reason()
    dag = SimpleNamespace(reason=lambda job: reason)
    assert internals.forced(dag, object()) is False
    reason.forced = True
    assert internals.forced(dag, object()) is True


def test_dag_marks_forced_jobs_in_their_reason() -> None:
    """The DAG sets `reason.forced` for jobs of forced rules and files (what `forced` relies on)."""
    import inspect

    import snakemake.api  # noqa: F401  (snakemake.dag imports cleanly only after the package's entry point)
    from snakemake.dag import DAG

    source = inspect.getsource(DAG.update_needrun)
    assert "reason.forced = True" in source and "forcerules" in inspect.getsource(DAG.__init__)
