"""Wave 9 probe of the `nw` front doors: what an ML user running `nw run experiment.nix` / `experiment.py` and the
store commands met, each a regression test that failed before its fix."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

from tests import nixsets
from tests.helpers import nw
from tests.nixcheck import require_nix

LIB = "inherit ((import <nixworkflow>).lib) output;"


def pinned_experiment(tmp_path: Path, packages: list[str], steps: str,
                      broken: tuple[str, ...] = ()) -> tuple[Path, str, str]:
    """experiment.nix over a fresh local package set (`packages`, each version 1-<tag>) pinned by sha256, with
    `steps` as the body of its `rec { }`; returns the file, the tag (no earlier test built these packages) and
    the pinned fetchTarball expression."""
    tag = uuid.uuid4().hex[:12]
    src = nixsets.package_set(tmp_path / "pkgs", {p: f"1-{tag}" for p in packages}, broken=broken)
    url, sha256 = nixsets.tarball(src, tmp_path / "pkgs.tar.gz")
    exp = tmp_path / "experiment.nix"
    exp.write_text(f"""let
  {LIB}
  pkgs = import ({pin(url, sha256)}) {{ }};
in
rec {{
{steps}}}
""")
    return exp, tag, pin(url, sha256)


PREPARE = '  prepare = output "${pkgs.prep}/bin/prep > $out/data";\n'
TRAIN = PREPARE + '  train = output "${pkgs.trainer}/bin/trainer ${prepare}/data > $out/model";\n'


def pin(url: str, sha256: str) -> str:
    return f'builtins.fetchTarball {{ url = "{url}"; sha256 = "{sha256}"; }}'


def test_output_option_error_names_the_file_and_line(tmp_path: Path) -> None:
    """A wrong option of `output` (gpu = "yes") was thrown while Nix printed the result, so the error named
    neither the step nor a file:line; in an experiment of fifty steps the user had to guess which one."""
    require_nix("nix-instantiate")
    exp = tmp_path / "experiment.nix"
    exp.write_text(f"let {LIB} in\nrec {{\n  ok = output \"echo 1 > $out/x\";\n"
                   "  fit = output { cmd = \"echo 2 > $out/x\"; gpu = \"yes\"; };\n}\n")
    proc = nw("run", "-n", str(exp))
    assert proc.returncode == 1 and "gpu must be true or false" in proc.stderr
    assert f"{exp}:4:" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_dry_run_and_status_build_no_env_and_a_target_needs_only_its_own(tmp_path: Path, store_root: Path) -> None:
    """`nw run -n`, `nw status` and `nw dag` built every env of the experiment with Nix (hours for a CUDA stack)
    and rooted it in the store, although -n promises "nothing runs"; and `nw run exp.nix prepare` failed because
    another step's package did not build, though `prepare` does not use it."""
    require_nix("nix-instantiate")
    exp, tag, pinned = pinned_experiment(tmp_path, ["prep", "trainer"], TRAIN, broken=("trainer",))
    (drv,) = nixsets.instantiate(f"(import ({pinned}) {{}}).prep")
    (prep_out,) = nixsets.outputs(drv)
    for args in (("run", "-n", str(exp)), ("status", str(exp)), ("dag", str(exp))):
        proc = nw(*args)
        assert proc.returncode == 0, proc.stderr
        assert "building the env" not in proc.stderr
    assert not os.path.exists(prep_out)  # nothing was built ...
    roots = store_root / "nix-gcroots"
    assert not [f for _, _, files in os.walk(roots) for f in files]  # ... nor rooted in the store

    run = nw("run", str(exp), "prepare")
    assert run.returncode == 0, run.stderr
    assert Path("nix-workflow-output/prepare/data").read_text() == f"prep 1-{tag}\n"
    whole = nw("run", str(exp))  # the step that needs the broken package fails, naming it
    assert whole.returncode == 1 and "step 'train'" in whole.stderr and "compiling trainer failed" in whole.stderr


def test_nix_dotted_attribute_and_nested_step_with_one_name_is_an_error(tmp_path: Path) -> None:
    """`"a.b" = output ...;` and `a = { b = output ...; };` are both named a.b: one of the two steps was silently
    dropped from the run (the output link showed the other's result)."""
    require_nix("nix-instantiate")
    exp = tmp_path / "experiment.nix"
    exp.write_text(f"let {LIB} in\nrec {{\n  \"model.small\" = output \"echo 1 > $out/x\";\n"
                   "  model = { small = output \"echo 2 > $out/x\"; };\n}\n")
    proc = nw("run", str(exp))
    assert proc.returncode == 1 and "two different steps are named 'model.small'" in proc.stderr, proc.stderr
    assert f"{exp}:3" in proc.stderr and f"{exp}:4" in proc.stderr
    assert not Path("nix-workflow-output/model.small").exists()


def test_python_dotted_key_and_nested_step_with_one_name_is_an_error(tmp_path: Path) -> None:
    """The same in experiment.py: `{"a": {"b": s}, "a.b": t}` gave both the name `grid.a.b`; one was dropped with
    a warning that it was "not held by any top-level name", and the other ran under the shared name."""
    exp = tmp_path / "experiment.py"
    exp.write_text("from nixlib import output\n"
                   "grid = {\"lr\": {\"0\": output(\"echo nested > $out/x\")},\n"
                   "        \"lr.0\": output(\"echo dotted > $out/x\")}\n")
    proc = nw("run", str(exp))
    assert proc.returncode == 1 and "two different steps are named 'grid.lr.0'" in proc.stderr, proc.stderr
    assert not Path("nix-workflow-output/grid.lr.0").exists()


def test_experiment_function_without_defaults_says_how_to_fix_it(tmp_path: Path) -> None:
    """`{ lr }: rec { ... }` (an experiment written for `nix-build --arg lr`) failed with Nix's message pointing
    into nw's own guard.nix; it now says that nw calls it without arguments and to give parameters defaults."""
    require_nix("nix-instantiate")
    exp = tmp_path / "experiment.nix"
    exp.write_text(f"let {LIB} in\n{{ lr }}: rec {{\n  fit = output \"echo ${{toString lr}} > $out/x\";\n}}\n")
    proc = nw("run", "-n", str(exp))
    assert proc.returncode == 1 and "called without required argument 'lr'" in proc.stderr
    assert "give the parameter a default" in proc.stderr and "--arg lr 0.001" in proc.stderr, proc.stderr


def nix_delete(path: str) -> subprocess.CompletedProcess[str]:
    """`nix-store --delete PATH`, tried again while it fails reading another process's /proc links: Nix's GC reads
    every process's open files and working directory as runtime roots, and fails on one whose path is longer than
    PATH_MAX ("reading symlink: File name too long"), as a concurrent test's deep tree can be for a moment."""
    for _ in range(10):
        deleted = subprocess.run(["nix-store", "--delete", path], capture_output=True, text=True)
        if deleted.returncode == 0 or "reading symlink" not in deleted.stderr:
            break
        time.sleep(1)
    return deleted


def test_a_step_served_from_the_store_needs_no_env_build(tmp_path: Path, store_root: Path) -> None:
    """After Nix's garbage collector removed an env, a re-run whose steps are all in the store rebuilt the env (hours
    for a CUDA stack) only to link results it did not run; now only the env of a step that runs is built."""
    require_nix("nix-store")
    exp, tag, pinned = pinned_experiment(tmp_path, ["prep"], PREPARE)
    (drv,) = nixsets.instantiate(f"(import ({pinned}) {{}}).prep")
    (prep_out,) = nixsets.outputs(drv)
    first = nw("run", str(exp))
    assert first.returncode == 0 and "building the env" in first.stderr, first.stderr
    for dirpath, dirs, files in os.walk(store_root / "nix-gcroots"):  # the env's roots go, then Nix collects it
        for f in dirs + files:
            if os.path.islink(os.path.join(dirpath, f)):
                os.unlink(os.path.join(dirpath, f))
    deleted = nix_delete(prep_out)
    assert deleted.returncode == 0 and not os.path.exists(prep_out), deleted.stderr
    again = nw("run", str(exp))
    assert again.returncode == 0 and "cached" in again.stderr, again.stderr
    assert "building the env" not in again.stderr and not os.path.exists(prep_out)
    assert Path("nix-workflow-output/prepare/data").read_text() == f"prep 1-{tag}\n"
    forced = nw("run", "--force", str(exp), "prepare")  # a step that runs gets its env built
    assert forced.returncode == 0 and "building the env" in forced.stderr, forced.stderr


def test_keep_going_runs_the_steps_whose_env_builds_when_another_env_fails(tmp_path: Path, store_root: Path) -> None:
    """`nw run -k` promises every step that does not depend on a failure still runs; a package that failed to
    build stopped the whole run before any step started. Now only the steps that need it fail (naming it)."""
    require_nix("nix-instantiate")
    report = '  report = output "cat ${train}/model > $out/r";\n'
    exp, tag, _ = pinned_experiment(tmp_path, ["prep", "trainer"], TRAIN + report, broken=("trainer",))
    stopped = nw("run", str(exp))
    assert stopped.returncode == 1 and "step 'train'" in stopped.stderr and "running" not in stopped.stderr
    going = nw("run", "-k", str(exp))
    assert going.returncode == 1 and "compiling trainer failed" in going.stderr, going.stderr
    assert Path("nix-workflow-output/prepare/data").read_text() == f"prep 1-{tag}\n"
    assert not Path("nix-workflow-output/train").exists() and not Path("nix-workflow-output/report").exists()
    show = nw("show", "train")
    assert "failed" in show.stdout + show.stderr, show.stdout + show.stderr
