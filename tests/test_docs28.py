"""Docs probe (wave 28): a newcomer installing and running what README.md and each --help say, through the real CLI."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import filelock
import pytest
import yaml

from tests.helpers import REPO

# `nw` as `pip install nixworkflow` (no extras) installs it: only the base dependencies of pyproject.toml
# (filelock, pyyaml) are importable; Python starts isolated (-I) and without site-packages (-S), so cryptography
# and boto3 are really absent, not hidden.
BASE_ONLY = "import sys; sys.path[:0] = sys.argv[1:3]; from nixlib.cli import main; sys.exit(main(sys.argv[3:]))"


def _base_install(tmp_path: Path) -> Path:
    """A directory holding only the base dependencies (links to the venv's copies)."""
    site = tmp_path / "site"
    site.mkdir()
    for module in (filelock, yaml):
        package = Path(module.__file__).parent
        (site / package.name).symlink_to(package)
    for extension in Path(yaml.__file__).parent.parent.glob("_yaml*"):  # pyyaml's C loader, when installed
        (site / extension.name).symlink_to(extension)
    return site


def test_nw_without_the_remote_extra_names_the_extra_to_install(tmp_path: Path) -> None:
    """`nw key generate` (and `nw push`/`pull`) on an install without the `remote` extra (pyproject.toml: boto3,
    cryptography) ended with 'internal error (a bug in nw …)', exit 70 and a traceback ending in
    `ModuleNotFoundError: No module named 'cryptography'`: not a bug but a missing optional package, which the
    error must name with the line that installs it."""
    site = _base_install(tmp_path)
    probe = subprocess.run([sys.executable, "-I", "-S", "-c", "import cryptography"], capture_output=True)
    assert probe.returncode != 0, "cryptography is importable without site-packages: the test proves nothing"
    env = {"NIX_WORKFLOW_STORE": str(tmp_path / "store"), "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-I", "-S", "-c", BASE_ONLY, str(site), str(REPO), "key", "generate", "k1"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
    assert "`nw key`" in r.stderr and "cryptography" in r.stderr, r.stderr
    assert "pip install 'nixworkflow[remote]'" in r.stderr, r.stderr
    assert not (tmp_path / "k1.sec").exists()


def test_nw_run_without_a_remote_needs_no_remote_extra(tmp_path: Path) -> None:
    """`nw run` on an experiment with no remote configured must work with the base dependencies alone, as the
    Snakemake executor and Luigi do (pyproject.toml puts boto3 and cryptography in the `remote` extra): it failed,
    as nixlib.remote's signing module imported cryptography at its top even with no remote set (now imported only
    when a key is made, read or used)."""
    site = _base_install(tmp_path)
    (tmp_path / "experiment.py").write_text('from nixlib import output\nx = output("echo hi > $out/a")\n')
    env = {"NIX_WORKFLOW_STORE": str(tmp_path / "store"), "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-I", "-S", "-c", BASE_ONLY, str(site), str(REPO), "run", "experiment.py"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "nix-workflow-output" / "x" / "a").read_text() == "hi\n"


def test_every_snakemake_option_with_a_value_states_its_default() -> None:
    """`snakemake --help` showed --nixworkflow-link-mode's modes without saying which one applies when it is not
    given (auto); every other option taking a value said its default."""
    from snakemake_executor_nixworkflow import settings

    for field in dataclasses.fields(settings.ExecutorSettings):
        if field.type in (bool, "bool"):
            continue  # a flag: off unless given
        text = field.metadata["help"].lower()
        assert "default" in text, f"--nixworkflow-{field.name.replace('_', '-')} does not say its default: {text}"
    link_mode = next(f for f in dataclasses.fields(settings.ExecutorSettings) if f.name == "link_mode")
    assert f"default: {link_mode.default}" in link_mode.metadata["help"]


@pytest.mark.parametrize("how", ["snakefile", "set-resources"])
def test_a_snakemake_switch_resource_that_is_no_switch_is_refused_before_any_job_runs(tmp_path: Path,
                                                                                     how: str) -> None:
    """`resources: nix_cache="maybe"` was taken as on (anything but 0/false/no/off), `nix_resumable="maybe"` as on
    too: a typo silently chose for the user. Now it stops the run before any job, naming the rule and the value."""
    resources = '    resources: nix_cache="maybe"\n' if how == "snakefile" else ""
    (tmp_path / "Snakefile").write_text(f'rule a:\n    output: "a.txt"\n{resources}    shell: "echo hi > {{output}}"\n')
    extra = ["--set-resources", "a:nix_resumable=maybe"] if how == "set-resources" else []
    env = dict(os.environ, PYTHONPATH=str(REPO), NIX_WORKFLOW_STORE=str(tmp_path / "store"))
    r = subprocess.run([sys.executable, "-m", "snakemake", "-c1", "--executor", "nixworkflow", *extra],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    name = "nix_cache" if how == "snakefile" else "nix_resumable"
    assert r.returncode != 0, r.stderr
    assert f"rule a: resource {name}='maybe' is not a switch" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "a.txt").exists()
    assert not list((tmp_path / "store").glob("realisations/*"))


def test_nw_run_out_link_naming_a_file_says_so(tmp_path: Path) -> None:
    """`nw run --out-link FILE` said "cannot be written (File exists)", which reads as a permission problem; it names
    the real one now, before any step runs, and leaves the file alone."""
    (tmp_path / "e.py").write_text('from nixlib import output\nx = output("echo hi > $out/a")\n')
    (tmp_path / "f").write_text("mine\n")
    env = dict(os.environ, NIX_WORKFLOW_STORE=str(tmp_path / "store"))
    r = subprocess.run([sys.executable, "-m", "nixlib.cli", "run", "e.py", "--out-link", "f"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stderr
    assert "the output-link directory f is a file, not a directory; nothing was run" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert (tmp_path / "f").read_text() == "mine\n"
    assert not list((tmp_path / "store").glob("realisations/*"))
