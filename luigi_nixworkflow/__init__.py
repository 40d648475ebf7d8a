"""Luigi adapter: `NixTask` and `NixTarget`, mixed freely with plain Luigi tasks.

A task that subclasses NixTask gets a Nix-pinned runtime, a content-addressed output in the
nixworkflow store, lineage records, and is never run twice for the same inputs (across
workers and hosts sharing the store); the tasks around it stay plain Luigi.
"""

from __future__ import annotations

from luigi_nixworkflow import keying, registry, settings, task, translate
from luigi_nixworkflow.registry import static
from luigi_nixworkflow.settings import nixworkflow
from luigi_nixworkflow.target import NixTarget
from luigi_nixworkflow.task import NixTask

__all__ = ["NixTask", "NixTarget", "nixworkflow", "reset", "static"]


def reset() -> None:
    """Forget every per-process memo: settings, engines, envs, placeholders, sources, owners, forced runs.

    Settings are otherwise read once per process; call this after changing luigi.cfg or NIX_WORKFLOW_STORE in
    a long-lived interpreter (tests, notebooks). Every luigi.build checks recipes and results afresh anyway."""
    settings.reset()
    registry.reset()
    keying.reset()
    translate.reset()
    task.reset()
