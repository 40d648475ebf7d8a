"""The Snakemake process a `run:` job (or a pure/env job) is spawned as, inside its env.

Snakemake imports every installed executor plugin when it starts, and some run host tools at import time
(snakemake-executor-plugin-slurm 2.8 calls `which sacct`): in a pure env, whose PATH holds only the env's
tools, that import raises and the job dies before a line of the user's code runs. So the plugins are
collected here first, with the host's standard tool directories appended to PATH, and PATH is restored
before Snakemake goes on to run the job: the user's code still sees only its env.

Invoked as `python -m snakemake_executor_nixworkflow.jobexec -m snakemake ARGS…` (the executor's
`get_python_executable()` is this module, and Snakemake appends `-m snakemake ARGS…`).
"""

from __future__ import annotations

import contextlib
import os
import runpy
import sys
from collections.abc import Iterator

HOST_TOOLS = "/usr/local/bin:/usr/bin:/bin"


@contextlib.contextmanager
def host_tools_on_path() -> Iterator[None]:
    """PATH with the host's standard directories appended, for as long as the block runs."""
    before = os.environ.get("PATH")
    os.environ["PATH"] = f"{before}:{HOST_TOOLS}" if before else HOST_TOOLS
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PATH", None)
        else:
            os.environ["PATH"] = before


def collect_plugins() -> None:
    """Import every executor plugin once (the registry is a process-wide singleton that Snakemake reuses)."""
    from snakemake_interface_executor_plugins.registry import ExecutorPluginRegistry

    with host_tools_on_path():
        ExecutorPluginRegistry()


def main(argv: list[str]) -> None:
    if argv[:2] != ["-m", "snakemake"]:
        sys.exit("usage: python -m snakemake_executor_nixworkflow.jobexec -m snakemake ARGS…")
    collect_plugins()
    sys.argv = ["snakemake", *argv[2:]]
    runpy.run_module("snakemake", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
