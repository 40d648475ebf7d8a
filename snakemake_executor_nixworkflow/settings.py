"""`--nixworkflow-*` options of the executor.

Snakemake turns each field into a CLI option `--nixworkflow-<field>`, a profile key and
(with `env_var`) a `SNAKEMAKE_NIXWORKFLOW_<FIELD>` variable. No `from __future__ import
annotations` here: the plugin registry inspects `field.type` as a real type (`bool` fields
become flags); optional fields name their type in `metadata["type"]`, which the registry
prefers (it cannot call a `X | None` union).
"""

import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from snakemake_interface_common.exceptions import WorkflowError
from snakemake_interface_executor_plugins.settings import ExecutorSettingsBase

LINK_MODES = ("auto", "copy", "reflink", "hardlink", "symlink")


class SetupError(WorkflowError):
    """A bad option, side-car or backend, found before any job runs: reported as its message alone. Snakemake
    prints the stack frames of a WorkflowError below its message (`File ".../executor.py", line 125, in
    __post_init__`), which say nothing about the user's pipeline; so this error shows Snakemake no traceback."""

    __traceback__ = property(lambda self: None, lambda self, value: None)  # type: ignore[assignment]


STORE_SETTING = "--nixworkflow-store DIR (or SNAKEMAKE_NIXWORKFLOW_STORE=DIR, or NIX_WORKFLOW_STORE=DIR)"
"""How a Snakemake user chooses the store, for the store's own errors (nixlib's Store takes it as `setting`)."""


@dataclass
class ExecutorSettings(ExecutorSettingsBase):
    """What a user of `snakemake --executor nixworkflow` can set; nothing here enters a recipe key."""

    store: Path | None = field(
        default=None,
        metadata={
            "help": "Store root shared by every pipeline that should share results "
            "(default: $NIX_WORKFLOW_STORE, else /nix-workflow).",
            "env_var": True,
            "type": Path,
            "required": False,
        },
    )
    config: Path | None = field(
        default=None,
        metadata={
            "help": "Side-car configuration defining the Nix envs rules run in "
            "(default: nixworkflow.yaml next to the Snakefile; without it every rule runs with the host's tools, "
            "recorded as unpinned).",
            "env_var": True,
            "type": Path,
            "required": False,
        },
    )
    env: str | None = field(
        default=None,
        metadata={
            "help": "Env (a name under `envs:` in nixworkflow.yaml, or host) for rules that name none "
            "(default: the config's `env:`). A rule picks its env with `resources: nix_env=\"NAME\"`, "
            "`--set-resources RULE:nix_env=NAME` or the config's `steps: {RULE: NAME}`.",
            "env_var": True,
            "type": str,
            "required": False,
        },
    )
    link_mode: str = field(
        default="auto",
        metadata={
            "help": "How cached outputs are put back into the working directory (default: auto): auto (reflink "
            "where the filesystem can, else copy), copy, reflink, hardlink (read-only files shared with the store) or "
            "symlink (into the read-only store; each link is a GC root for nw gc, the other modes' files are not).",
            "env_var": True,
            "required": False,
            "choices": LINK_MODES,
        },
    )
    pure: bool = field(
        default=False,
        metadata={
            "help": "Run jobs with only the env on PATH and an allow-list of variables (HOME, locale, TMPDIR, "
            "thread counts...), so a rule cannot silently use a host tool (also per env: `pure: true`).",
            "env_var": True,
            "required": False,
        },
    )
    sandbox: bool = field(
        default=False,
        metadata={
            "help": "Run each job inside bubblewrap: system directories and /nix/store read-only, no home "
            "directories, /run or /var, the working directory writable, a private /tmp (also per env in "
            "nixworkflow.yaml: `sandbox: true`).",
            "env_var": True,
            "required": False,
        },
    )
    network: bool = field(
        default=False,
        metadata={
            "help": "Let sandboxed jobs use the network (a sandboxed job has none by default; per env in "
            "nixworkflow.yaml: `network: true`). Jobs outside the sandbox always have it.",
            "env_var": True,
            "required": False,
        },
    )
    remote: str | None = field(
        default=None,
        metadata={
            "help": "Remote cache URL (s3://BUCKET/PREFIX?endpoint=URL or file:///DIR): jobs missing from the store "
            "are substituted from it when a trusted key signed them (default: $NIX_WORKFLOW_REMOTE; see "
            "docs/remote.md).",
            "env_var": True,
            "type": str,
            "required": False,
        },
    )
    trusted_keys: str | None = field(
        default=None,
        metadata={
            "help": "Public keys (NAME:BASE64, space-separated) whose signed records the remote may serve "
            "(default: $NIX_WORKFLOW_TRUSTED_KEYS).",
            "env_var": True,
            "type": str,
            "required": False,
        },
    )
    push: bool = field(
        default=False,
        metadata={
            "help": "Push the results of jobs that ran to the remote, signed with --nixworkflow-secret-key-file.",
            "env_var": True,
            "required": False,
        },
    )
    secret_key_file: Path | None = field(
        default=None,
        metadata={
            "help": "Secret key (from `nw key generate`) that signs pushed records (default: "
            "$NIX_WORKFLOW_SECRET_KEY_FILE).",
            "env_var": True,
            "type": Path,
            "required": False,
        },
    )
    no_cache: bool = field(
        default=False,
        metadata={
            "help": "Run every job in its env without looking up or recording anything in the store "
            "(per rule: `resources: nix_cache=0`).",
            "env_var": True,
            "required": False,
        },
    )
    backend: str | None = field(
        default=None,
        metadata={
            "help": "Run cache misses through this remote executor plugin, e.g. slurm (with its own options, "
            "`--slurm-*`, and profile unchanged): hits are restored here without submitting anything, each miss "
            "is submitted by that plugin, runs in its env on the node and is stored here under the recipe's "
            "lock (docs/slurm.md). Default: run misses here, like Snakemake's local executor.",
            # not from the environment: a batch job inherits the submitting shell's variables, and the Snakemake
            # that runs a job on the node must not submit it again
            "env_var": False,
            "type": str,
            "required": False,
        },
    )

    def __post_init__(self) -> None:
        """Snakemake reads an executor plugin's common settings (local or cluster run) before it creates the
        executor, but after it has parsed these settings: so a backend is put in place here."""
        from snakemake_executor_nixworkflow import backend

        self.check_remote()
        self.check_store()
        backend.activate(self.backend)

    def check_store(self) -> None:
        """A store that cannot be used (a file; missing parent directories, which nw and Luigi refuse too; a
        read-only filesystem) is a SetupError naming --nixworkflow-store, before Snakemake builds the DAG: the
        store's own error would name only NIX_WORKFLOW_STORE (the executor opens it with nixlib's defaults)."""
        from nixlib.errors import NixWorkflowError
        from nixlib.store import check_root, default_root

        try:
            check_root(Path(self.store or default_root()), STORE_SETTING)
        except NixWorkflowError as e:
            raise SetupError(f"nixworkflow: {e}") from None

    def check_remote(self) -> None:
        """A remote URL or push setting that cannot be used is a SetupError naming the option or variable, before
        Snakemake builds the DAG (`http://[` raised a bare ValueError with a traceback from deep in nixlib)."""
        import os

        from nixlib.config import check_push_flag, check_remote_url
        from nixlib.errors import NixWorkflowError

        try:
            check_remote_url(self.remote, "--nixworkflow-remote (or SNAKEMAKE_NIXWORKFLOW_REMOTE)")
            if not self.remote:
                check_remote_url(os.environ.get("NIX_WORKFLOW_REMOTE"), "NIX_WORKFLOW_REMOTE")
            check_push_flag(os.environ.get("NIX_WORKFLOW_PUSH"), "NIX_WORKFLOW_PUSH")
        except NixWorkflowError as e:
            raise SetupError(f"nixworkflow: {e}") from None


# The nixworkflow settings of a run whose `workflow.executor_settings` are the backend plugin's own (which the
# backend's code reads), by id of the workflow (a Workflow is not hashable), forgotten with it.
_SETTINGS: dict[int, ExecutorSettings] = {}


def register(workflow: Any, settings: ExecutorSettings) -> None:
    """Remember the nixworkflow settings of `workflow` while its executor settings are a backend's."""
    key = id(workflow)
    if key not in _SETTINGS:
        weakref.finalize(workflow, _SETTINGS.pop, key, None)
    _SETTINGS[key] = settings


def settings_of(workflow: Any) -> ExecutorSettings:
    """The nixworkflow settings of a run: registered by a backend, else Snakemake's executor settings."""
    registered = _SETTINGS.get(id(workflow))
    if registered is not None:
        return registered
    settings = workflow.executor_settings
    return settings if isinstance(settings, ExecutorSettings) else ExecutorSettings()
