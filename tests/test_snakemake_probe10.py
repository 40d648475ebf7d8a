"""Wave 10 probes of `snakemake --executor nixworkflow`: pipelines in the style of the snakemake-workflows catalog,
and what a user sees when an option or the side-car is wrong.

Each test is a bug the probe found, compared with what Snakemake's local executor does.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_snakemake import snakemake
from tests.test_snakemake_semantics import write

pytest.importorskip("snakemake")

pytestmark = pytest.mark.slow


PIPELINE = {
    "Snakefile": '''
rule all:
    input: "out.txt"

rule make:
    output: "out.txt"
    shell: "echo made > {output}"
''',
}

UNPINNED = "envs:\n  tools: {packages: [hello]}\nsteps:\n  make: tools\n"


@pytest.mark.parametrize("args, files, message", [
    (["--nixworkflow-config", "missing.yaml"], {}, "the config missing.yaml given with --nixworkflow-config does not "
                                                   "exist"),
    (["--nixworkflow-backend", "nosuch"], {}, "no Snakemake executor plugin 'nosuch' is installed"),
])
def test_a_setup_error_is_its_message_without_the_executors_stack_frames(
        tmp_path: Path, store_root: Path, args: list[str], files: dict[str, str], message: str) -> None:
    """A missing side-car, an unknown backend or an unpinned env stop the run before any job, with a clear message;
    but Snakemake printed the stack frames of the plugin's WorkflowError under it (`File ".../executor.py", line
    125, in __post_init__`; four frames for a backend), a traceback in all but name."""
    wf = write(tmp_path / "wf", {**PIPELINE, **files})
    proc = snakemake(wf, *args)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr
    assert 'File "' not in proc.stderr and "__post_init__" not in proc.stderr, proc.stderr
    assert not (wf / "out.txt").exists()


def test_the_unpinned_env_error_tells_a_snakemake_user_an_opt_in_that_works(tmp_path: Path, store_root: Path) -> None:
    """The error for an unpinned env said "pass --allow-unpinned", an option of `nw run` that `snakemake` rejects
    (`unrecognized arguments`); Snakemake and Luigi users can only set NIX_WORKFLOW_ALLOW_UNPINNED=1. With it set
    and no channel on the search path, Nix's error went on to say "set NIX_WORKFLOW_ALLOW_UNPINNED=1" again."""
    wf = write(tmp_path / "wf", {**PIPELINE, "nixworkflow.yaml": UNPINNED})
    proc = snakemake(wf)
    assert proc.returncode != 0
    assert "set NIX_WORKFLOW_ALLOW_UNPINNED=1" in proc.stderr, proc.stderr
    assert "pass --allow-unpinned (" not in proc.stderr and 'File "' not in proc.stderr, proc.stderr
    # The opt-in works (no channel on the search path here, so Nix then fails to find <nixpkgs>), and the error
    # no longer tells a user who set the variable to set it.
    allowed = snakemake(wf, env={"NIX_WORKFLOW_ALLOW_UNPINNED": "1", "NIX_PATH": ""})
    assert allowed.returncode != 0 and "which is not pinned" not in allowed.stderr, allowed.stderr
    assert "NIX_WORKFLOW_ALLOW_UNPINNED is set" in allowed.stderr, allowed.stderr
    assert "To run unpinned anyway" not in allowed.stderr, allowed.stderr


def test_hardlink_mode_keeps_its_own_links_but_never_seals_an_input_a_rule_linked(tmp_path: Path) -> None:
    """--nixworkflow-link-mode hardlink makes a job's output file the read-only store object (its promise), and a
    rule that hard-links its input as its output (`ln {input} {output}`) must not make the user's input file part
    of the store: the store keeps the executor's own link, and copies a file that is linked anywhere else."""
    write(tmp_path, {"Snakefile": 'rule all:\n    input: "a.txt", "b.txt"\n\n'
                                  'rule a:\n    output: "a.txt"\n    shell: "echo a > {output}"\n\n'
                                  'rule b:\n    input: "raw.txt"\n    output: "b.txt"\n'
                                  '    shell: "ln {input} {output}"\n',
                     "raw.txt": "raw\n"})
    env = {"NIX_WORKFLOW_STORE": str(tmp_path / "store")}
    proc = snakemake(tmp_path, "--nixworkflow-link-mode", "hardlink", env=env)
    assert proc.returncode == 0, proc.stderr
    a = (tmp_path / "a.txt").stat()
    assert a.st_nlink == 2 and not a.st_mode & 0o222, "the output is the read-only store object"
    raw = (tmp_path / "raw.txt").stat()
    assert raw.st_mode & 0o200, "the user's input file was sealed read-only as a store object"
    objects = [p.stat().st_ino for p in (tmp_path / "store" / "store").iterdir()]
    assert raw.st_ino not in objects and a.st_ino in objects


def test_hardlink_mode_stores_an_output_snakemake_touches_while_the_store_takes_it(tmp_path: Path) -> None:
    """Snakemake touches every output of a finished job (its post-processing, against clock skew). In hardlink mode
    the working-directory file is the store object's inode, and the job was reported finished before the store had
    it: a touch between the store's hash and its scan-after was a change under the object's name, so the object was
    quarantined and the output never stored (the run succeeded with a warning; CI saw it at random). The pause at
    `ingest-staged` (inside that window) holds the store there for 2 s: Snakemake, released too early, touched the
    file before the store's realisation record existed (or inside the window, and nothing was recorded)."""
    write(tmp_path, {"Snakefile": 'rule all:\n    input: "a.txt"\n\nrule a:\n    output: "a.txt"\n'
                                  '    shell: "echo a > {output}; echo ran >> runs.log"\n'})
    env = {"NIX_WORKFLOW_STORE": str(tmp_path / "store"), "NIX_WORKFLOW_PAUSE": "ingest-staged:2"}
    proc = snakemake(tmp_path, "--nixworkflow-link-mode", "hardlink", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "could not be stored" not in proc.stderr, proc.stderr
    assert not list((tmp_path / "store" / "quarantine").glob("*")), "the touched object was quarantined"
    objects = [p.stat().st_ino for p in (tmp_path / "store" / "store").iterdir()]
    assert objects == [(tmp_path / "a.txt").stat().st_ino]
    [record] = (tmp_path / "store" / "realisations").iterdir()
    assert (tmp_path / "a.txt").stat().st_mtime_ns >= record.stat().st_mtime_ns, \
        "Snakemake's post-processing touched the output before the store had recorded it"
    (tmp_path / "a.txt").unlink()
    again = snakemake(tmp_path, "--nixworkflow-link-mode", "hardlink",
                      env={"NIX_WORKFLOW_STORE": env["NIX_WORKFLOW_STORE"]})
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "runs.log").read_text() == "ran\n", "the second run executed the rule again"
    assert (tmp_path / "a.txt").read_text() == "a\n"
