"""Everything the executor assumes about Snakemake beyond the executor-plugin interface, in one place.

Snakemake's plugin interface tells an executor which job to run, not why, nor how Snakemake itself treats
a directory symlink. The executor needs a few such facts; each is read here, from Snakemake 9.27's
internals, and each has a test (tests/test_snakemake_internals.py) that fails by name when a Snakemake
release changes it.
"""

from __future__ import annotations

import os
from typing import Any

TIMESTAMP = ".snakemake_timestamp"  # the file that carries a directory() output's mtime for Snakemake


def forced(dag: Any, job: Any) -> bool:
    """True when Snakemake runs `job` because the user forced it (`--forceall`, `-R/--forcerun`, `-f`,
    `--rerun-incomplete` of its outputs): the DAG marks such a job's reason `forced`. A forced job must
    execute, never be restored from the store."""
    try:
        return bool(dag.reason(job).forced)
    except (AttributeError, KeyError):
        return False


def static_resource(rule: Any, name: str) -> Any | None:
    """A rule's resource value when it is known without evaluating anything (a literal in the Snakefile or
    from `--set-resources`); None when unset or computed by a function. Reading `job.resources` instead
    would evaluate resource functions before their upstream files exist (Snakemake evaluates them lazily,
    when the job is about to run), so start-up checks must use this."""
    try:
        resource = rule.resources.get(name)
    except AttributeError:
        return None
    if resource is None:
        return None
    if hasattr(resource, "is_evaluable"):
        if resource.is_evaluable():
            return None
        return resource.value
    return None if callable(resource) else resource


def carries_timestamp(path: str) -> bool:
    """Whether Snakemake keeps a directory() output's mtime in `<dir>/.snakemake_timestamp`: only for a real
    directory. For a symlink Snakemake uses the link's own mtime and never writes through it."""
    return os.path.isdir(path) and not os.path.islink(path)


def is_checkpoint(job: Any) -> bool:
    """A checkpoint job: Snakemake re-evaluates the DAG from its outputs once it finishes."""
    return bool(getattr(job, "is_checkpoint", False))


# Resources that say where or how a job is scheduled on this machine, not what it computes: `tmpdir` is a
# host path, `_nodes` a cluster count; nix_env/nix_cache are the executor's own (the env is keyed by identity).
UNKEYED_RESOURCES = frozenset({"tmpdir", "_nodes", "nix_env", "nix_cache", "nix_resumable"})


def keyed_resources(job: Any) -> dict[str, Any]:
    """The evaluated resources of a job that code reading `snakemake.resources`/`resources` can see."""
    return {str(k): v for k, v in job.resources.items() if k not in UNKEYED_RESOURCES}
