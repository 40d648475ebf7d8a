"""Docs probe (wave 24): a newcomer following README.md and each command's --help, through the real CLI."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import nw

EXPERIMENT = (
    "from nixlib import output\n"
    'model = output("for i in 1 2; do mkdir -p $NW_CHECKPOINTS/epoch-$i.tmp; echo $i > $NW_CHECKPOINTS/epoch-$i.tmp/m;'
    ' mv $NW_CHECKPOINTS/epoch-$i.tmp $NW_CHECKPOINTS/epoch-$i; done; echo done > m", checkpoints=True)\n'
)


def test_pin_and_checkpoints_take_store_after_the_command(tmp_path: Path) -> None:
    """README: the store is `/nix-workflow` unless NIX_WORKFLOW_STORE or `--store DIR` says otherwise, and every
    other command that reads a store takes `--store DIR` after its name (`nw show STEP --store DIR`); `nw pin` and
    `nw checkpoints` refused it ("unrecognized arguments: --store"), exit 2."""
    store = tmp_path / "elsewhere"
    (tmp_path / "experiment.py").write_text(EXPERIMENT)
    r = nw("run", "experiment.py", "--store", str(store), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    expected = nw("hash", str((tmp_path / "nix-workflow-output" / "model").resolve()), check=True).stdout.split()[0]
    # NIX_WORKFLOW_STORE points at an empty path: only --store can find the results
    env = {"NIX_WORKFLOW_STORE": str(tmp_path / "no-store-here")}
    pin = nw("pin", "model", "--store", str(store), cwd=tmp_path, env=env)
    assert pin.returncode == 0, pin.stderr
    assert pin.stdout.split() == [expected]
    cps = nw("checkpoints", "model", "--store", str(store), cwd=tmp_path, env=env)
    assert cps.returncode == 0, cps.stderr
    assert [line.split("\t")[0] for line in cps.stdout.splitlines()] == ["epoch-1", "epoch-2"]


def test_run_and_gc_help_say_which_store() -> None:
    """`nw run --help` and `nw gc --help` did not say which store they use (only `nw --help` did): a newcomer who
    reads the command's own help could not tell that results go to /nix-workflow unless NIX_WORKFLOW_STORE or
    --store says otherwise."""
    for command in ("run", "gc"):
        text = nw(command, "--help", check=True).stdout
        for words in ("--store DIR", "$NIX_WORKFLOW_STORE", "/nix-workflow"):
            assert words in text, f"`nw {command} --help` does not mention {words}:\n{text}"
