"""Wave 10b: what the `nw` probe of wave 10 found and left: read-only commands that created the store, a host-env
warning for steps served from the store, advice that could not work for a store path that is a file, the
top-level usage for a subcommand's bad flag, Nix errors that did not name the step or the static's own line,
`nw status` silent about a kept `$state`, and subcommands' --help without examples. Each test failed before
its fix."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from nixlib import cli
from tests.helpers import nw
from tests.nixcheck import require_nix

EXPERIMENT = 'from nixlib import output\na = output("echo a > $out/a")\nb = output(f"cat {a}/a > $out/b")\n'


def experiment(where: Path) -> Path:
    where.mkdir(exist_ok=True)
    (where / "experiment.py").write_text(EXPERIMENT)
    return where / "experiment.py"


@pytest.mark.parametrize("argv", [["show", "a"], ["log", "a"], ["lineage", "a"], ["diff", "a", "b"],
                                  ["check", "a"], ["gc"], ["gc", "-n"], ["verify"]])
def test_a_command_that_reads_results_refuses_a_missing_store_and_does_not_create_it(
        tmp_path: Path, store_root: Path, capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    """`nw show`, `nw gc`, `nw verify` … on a store path with no store created an empty store there (a typo in
    NIX_WORKFLOW_STORE left a new store behind) and then said the step was unknown, or that all was well."""
    experiment(Path.cwd())
    code, err = cli.main(argv), capsys.readouterr().err
    assert code == 1, err
    assert f"there is no store at {store_root}" in err and "Traceback" not in err, err
    assert not store_root.exists()


@pytest.mark.parametrize(("argv", "code", "answer"), [
    (["status", "experiment.py"], 0, "to run  a"), (["dag", "experiment.py"], 0, "to run"),
    (["run", "-n", "experiment.py"], 0, "would run         a"),
    (["why", "b", "-f", "experiment.py"], 0, "'b' would run"),
    (["checkpoints", "a", "-f", "experiment.py"], 0, "step 'a' has published no checkpoint"),
    (["pin", "a", "-f", "experiment.py"], 1, "step 'a' has no result in the store")])
def test_a_plan_against_a_missing_store_says_nothing_is_there_and_does_not_create_it(
        tmp_path: Path, store_root: Path, capsys: pytest.CaptureFixture[str], argv: list[str], code: int,
        answer: str) -> None:
    """`nw status` / `dag` / `why` / `run -n` / `checkpoints` / `pin` created the store; their natural answer is
    that nothing is cached (or published, or realised)."""
    experiment(Path.cwd())
    assert cli.main(argv) == code
    out, err = capsys.readouterr()
    assert f"there is no store at {store_root} yet" in err, err
    assert answer in out + err, out + err
    assert "nw-no-store" not in out + err  # the empty stand-in is never named
    assert not store_root.exists()


def test_the_host_environment_warning_names_only_steps_that_run(tmp_path: Path) -> None:
    """The warning "N step(s) run with the host environment" was printed even when every step was served from the
    store and nothing ran."""
    exp = experiment(tmp_path / "p")
    first = nw("run", str(exp), cwd=exp.parent, check=True)
    assert "2 step(s) to run use the host environment, not pinned by Nix: a, b" in first.stderr, first.stderr
    second = nw("run", str(exp), cwd=exp.parent, check=True)
    assert "a: cached" in second.stderr and "host environment" not in second.stderr, second.stderr
    forced = nw("run", "--force", str(exp), "b", cwd=exp.parent, check=True)
    assert "1 step(s) to run use the host environment, not pinned by Nix: b\n" in forced.stderr, forced.stderr


@pytest.mark.parametrize("below", ["", "sub"])
def test_a_store_path_that_is_a_file_is_named_with_advice_that_can_work(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], below: str) -> None:
    """A store on a file said "not writable (Not a directory) … sudo mkdir -m 1777 -p /that/file", which cannot
    work; a path below a file said "cannot create the store … sudo mkdir"."""
    afile = tmp_path / "afile"
    afile.write_text("not a store\n")
    experiment(Path.cwd())
    root = afile / below if below else afile
    assert cli.main(["--store", str(root), "run", "experiment.py"]) == 1
    err = capsys.readouterr().err
    assert "sudo mkdir" not in err and "not a directory" in err and str(root) in err, err
    assert f"under {afile}, which is a file" in err if below else "it is a file" in err, err
    assert afile.read_text() == "not a store\n"


@pytest.mark.parametrize(("argv", "usage"), [(["run", "--bogus", "x.py"], "usage: nw run "),
                                             (["show", "a", "--bogus"], "usage: nw show "),
                                             (["--bogus", "gc"], "usage: nw [-h]")])
def test_an_unknown_option_shows_the_usage_of_the_command_it_was_given_to(
        capsys: pytest.CaptureFixture[str], argv: list[str], usage: str) -> None:
    """`nw run --bogus` printed the top-level usage (`nw [-h] [--store DIR] … COMMAND`), not `nw run`'s."""
    with pytest.raises(SystemExit) as stop:
        cli.main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(usage) and "unrecognized arguments: --bogus" in err, err


def test_a_string_env_in_nix_names_the_step_and_line(tmp_path: Path) -> None:
    """`env = "python3";` said only "store path python3 is not under /nix/store", naming no step."""
    require_nix("nix-instantiate")
    exp = tmp_path / "experiment.nix"
    exp.write_text('let inherit ((import <nixworkflow>).lib) output; in {\n'
                   '  ok = output "echo 1 > $out/x";\n'
                   '  prep = output { cmd = "echo 1 > $out/x"; env = "python3"; };\n}\n')
    proc = nw("run", "-n", str(exp), cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert f"step 'prep' ({exp}:3): env = 'python3' is not a package" in proc.stderr, proc.stderr


def test_a_missing_static_bound_in_a_let_is_reported_at_its_own_line(tmp_path: Path) -> None:
    """A `static { path = ./missing.csv; … }` bound in a `let` was reported at the line of the step using it."""
    require_nix("nix-instantiate")
    exp = tmp_path / "experiment.nix"
    exp.write_text('let\n  inherit ((import <nixworkflow>).lib) output static;\n'
                   '  data = static {\n    path = ./missing.csv;\n    hash = "' + "0" * 52 + '";\n  };\nin {\n'
                   '  prep = output "cat ${data} > $out/x";\n}\n')
    proc = nw("run", "-n", str(exp), cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert f"{exp}:5: static input {tmp_path}/missing.csv does not exist" in proc.stderr, proc.stderr


def test_status_says_a_resumable_step_resumes_from_its_kept_state(tmp_path: Path, store_root: Path) -> None:
    """After an unfinished run (interrupted, or failed as here), `nw status` showed the resumable step as plain
    "to run", not that it resumes from its kept $state."""
    exp = tmp_path / "experiment.py"
    exp.write_text("from nixlib import output\n"
                   "train = output('echo 1 >> $state/epochs; test -s $state/epochs.done || "
                   "{ touch $state/epochs.done; exit 1; }; cp $state/epochs $out/', resumable=True)\n"
                   "plain = output('echo 1 > $out/x; exit 1')\n")
    assert nw("run", "-k", str(exp)).returncode == 1
    out = nw("status", str(exp), check=True).stdout
    kept = next(store_root.joinpath("state").iterdir())
    lines = {line.split("  ")[1]: line for line in out.splitlines()}
    assert f"  train  (no realisation of its recipe with these inputs is in the store; it resumes from its $state " \
           f"kept from an unfinished run ({kept}); last run: step 'train' failed" in lines["train"], out
    assert "resumes" not in lines["plain"], out


def _examples(parser: argparse.ArgumentParser) -> list[str]:
    """The example commands of a --help epilog: each line `  nw …`, up to its description (two spaces) or a pipe."""
    lines = (parser.epilog or "").splitlines()
    return [re.split(r"\s{2,}|\s\|\s", line.strip())[0] for line in lines if line.startswith("  nw ")]


def test_every_subcommand_has_examples_in_its_help_and_each_parses(tmp_path: Path) -> None:
    """hash, show, lineage, log, gc, verify, view, checkpoints and pin had no example in --help; every example of
    every subcommand must name options that exist."""
    parser = cli._parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = [name for name, p in sub.choices.items() if not _examples(p) and name not in ("push", "pull")]
    assert missing == [], missing  # (push and pull describe their use in prose)
    for name, p in sub.choices.items():
        for example in _examples(p):
            words = shlex.split(example)[1:]
            args = parser.parse_args(words)  # exits (fails the test) on an unknown option or a missing argument
            assert args.cmd == name, example  # an example of this subcommand, not of another
