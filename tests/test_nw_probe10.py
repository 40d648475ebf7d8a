"""Wave 10 probe of the `nw` front doors: what a new user met writing ML pipelines (prepare → a sweep of trainings
→ evaluations → a report) for `nw run experiment.py` / `experiment.nix`, each a regression test that failed before
its fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import nw, tree_snapshot

COMMON = "def load(path):\n    return [float(x) for x in open(path).read().split()]\n"
TRAIN = """import json, sys
from common import load
rows = load(sys.argv[1])
json.dump({"w": sum(rows) * float(sys.argv[2])}, open("model.json", "w"))
open("metrics.txt", "w").write("rows %d\\n" % len(rows))
"""
SWEEP = """import itertools
from pathlib import Path
from nixlib import output
HERE = Path(__file__).parent
data = output("seq 1 20 > $out/data.txt")
models = {(lr, bs): output(f"python3 {HERE}/train.py {data}/data.txt {lr} --bs={bs}")
          for lr, bs in itertools.product([0.1, 0.01], [32])}
report = output("cat " + " ".join(f"{m}/model.json" for m in models.values()) + " > $out/report.txt")
"""


def warm(store_root: Path, where: Path) -> dict[str, bytes | str]:
    """Run a one-step experiment so the store exists (its empty directories are no change), then snapshot it."""
    where.mkdir()
    (where / "warm.py").write_text('from nixlib import output\nw = output("echo w > $out/w")\n')
    nw("run", str(where / "warm.py"), cwd=where, check=True)
    return tree_snapshot(store_root)


def sweep_project(where: Path) -> Path:
    """An experiment.py training over an `itertools.product` sweep with a project script that imports a module."""
    where.mkdir()
    (where / "common.py").write_text(COMMON)
    (where / "train.py").write_text(TRAIN)
    (where / "experiment.py").write_text(SWEEP)
    return where / "experiment.py"


def test_a_tuple_key_of_a_sweep_names_the_step_by_its_parts(tmp_path: Path) -> None:
    """`{(lr, bs): output(...) for lr, bs in itertools.product(...)}` named the steps by the tuple's repr,
    `models.(0.1, 32)`: an output link with parentheses, quotes and a space, which `nw show` needed quoted."""
    exp = sweep_project(tmp_path / "p")
    nw("run", str(exp), cwd=exp.parent, check=True)
    links = sorted(p.name for p in (exp.parent / "nix-workflow-output").iterdir() if not p.name.startswith("."))
    assert links == ["data", "models.0.01.32", "models.0.1.32", "report"], links
    shown = nw("show", "models.0.1.32", cwd=exp.parent)
    assert shown.returncode == 0 and " 0.1 --bs=32" in shown.stdout, shown.stderr


def test_why_after_editing_a_local_module_says_the_script_or_its_imports_changed(tmp_path: Path) -> None:
    """Editing common.py (imported by train.py) re-ran the trainings, and `nw why` said only
    `parameter 'extra' differs: {"code": {"./train.py": "0aw…"}} → {…}`: the file the user edited was not named,
    and the one named looked unchanged to them."""
    exp = sweep_project(tmp_path / "p")
    nw("run", str(exp), cwd=exp.parent, check=True)
    (exp.parent / "common.py").write_text(COMMON + "VERSION = 2\n")
    why = nw("why", "models.0.1.32", cwd=exp.parent)
    assert why.returncode == 0, why.stderr
    assert "project script ./train.py changed (its content or a local module it imports)" in why.stdout, why.stdout
    assert "parameter 'extra'" not in why.stdout, why.stdout
    ran = nw("run", str(exp), cwd=exp.parent, check=True).stderr
    assert "data: cached" in ran and "models.0.1.32: done" in ran and "models.0.01.32: done" in ran, ran


@pytest.mark.parametrize(("option", "value"), [("sandbox", '"false"'), ("gpu", '"no"'), ("resumable", "1"),
                                                ("network", '"off"')])
def test_an_on_off_option_of_output_that_is_not_a_bool_is_an_error(tmp_path: Path, store_root: Path, option: str,
                                                                     value: str) -> None:
    """experiment.nix refuses `gpu = "yes"`, but experiment.py took any value: `sandbox="false"` (a string, so
    true) ran the step in the sandbox, `gpu="no"` asked for a GPU, all without a word."""
    exp = tmp_path / "experiment.py"
    exp.write_text(f'from nixlib import output\nok = output("echo 1 > $out/x")\nfit = output("echo 2 > $out/x", '
                   f'{option}={value})\n')
    before = warm(store_root, tmp_path / "warm")
    proc = nw("run", str(exp))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"{exp}:3: output() option {option} must be True or False" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and tree_snapshot(store_root) == before


def test_a_numpy_bool_is_a_bool(tmp_path: Path) -> None:
    """`resumable=np.bool_(True)` (a flag from a NumPy sweep) failed with "TypeError: Object of type bool is not
    JSON serializable", naming neither the option nor NumPy."""
    pytest.importorskip("numpy")
    exp = tmp_path / "experiment.py"
    exp.write_text('import numpy as np\nfrom nixlib import output\nfit = output("echo ${state:-none} > $out/x", '
                   'resumable=np.bool_(True))\n')
    nw("run", str(exp), check=True)
    assert (Path("nix-workflow-output") / "fit" / "x").read_text() != "none\n"


def test_a_store_root_with_a_space_is_refused_before_anything_runs(tmp_path: Path) -> None:
    """With NIX_WORKFLOW_STORE="/home/me/my results/store" every step failed: `$out` and each interpolated upstream
    path lie under the store, unquoted in nearly every command (`echo 1 > $out/x`: "ambiguous redirect";
    `python prep.py $out`: `$out` split in two), and the error only said "command exited with status 1"."""
    root = tmp_path / "my results" / "store"
    root.parent.mkdir()
    exp = tmp_path / "experiment.py"
    exp.write_text('from nixlib import output\ndata = output("seq 1 3 > $out/data.txt")\n')
    proc = nw("run", str(exp), env={"NIX_WORKFLOW_STORE": str(root)})
    assert proc.returncode == 1, proc.stderr
    assert f"the store root '{root}' contains a space" in proc.stderr and "--store DIR" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not root.exists()


def test_show_log_and_lineage_document_out_link_and_the_error_points_at_it(tmp_path: Path) -> None:
    """After `nw run --out-link runs/out`, `nw show STEP` said "no step or path named …", and `nw show --help`
    did not list the `--out-link` that finds it (the option existed, hidden)."""
    exp = tmp_path / "experiment.py"
    exp.write_text('from nixlib import output\ndata = output("seq 1 3 > $out/data.txt")\n')
    nw("run", "--out-link", "runs/out", str(exp), check=True)
    missed = nw("show", "data")
    assert missed.returncode == 1 and "--out-link DIR" in missed.stderr, missed.stderr
    assert nw("show", "--out-link", "runs/out", "data").returncode == 0
    for command in ("show", "log", "lineage"):
        assert "--out-link DIR" in nw(command, "--help", check=True).stdout


def test_an_error_inside_a_project_module_names_where_it_was_raised(tmp_path: Path, store_root: Path) -> None:
    """`lr = params.load()` failing inside params.py was reported at the experiment's line only, with
    `KeyError: 'lr'`: the line of params.py that raised it was not named."""
    (tmp_path / "params.py").write_text('import json\n\ndef load():\n    return json.loads("{}")["lr"]\n')
    exp = tmp_path / "experiment.py"
    exp.write_text('import params\nfrom nixlib import output\nlr = params.load()\n'
                   'fit = output(f"echo {lr} > $out/x")\n')
    before = warm(store_root, tmp_path / "warm")
    proc = nw("run", str(exp))
    assert proc.returncode == 1, proc.stderr
    assert f"{exp}:3: evaluating the experiment failed: KeyError: 'lr'" in proc.stderr, proc.stderr
    assert f"raised at {tmp_path / 'params.py'}:4, in load" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and tree_snapshot(store_root) == before


def test_run_json_without_dry_run_is_an_error_and_runs_nothing(tmp_path: Path, store_root: Path) -> None:
    """`nw run --json FILE` ran every step and printed text: `--json` (documented "with --dry-run") was ignored."""
    exp = tmp_path / "experiment.py"
    exp.write_text('from nixlib import output\ndata = output("seq 1 3 > $out/data.txt")\n')
    proc = nw("run", "--json", str(exp))
    assert proc.returncode == 1 and "needs -n" in proc.stderr, proc.stdout + proc.stderr
    assert not store_root.exists() and not Path("nix-workflow-output").exists()
    plan = json.loads(nw("run", "-n", "--json", str(exp), check=True).stdout)
    assert [s["name"] for s in plan] == ["data"]


def test_a_symlinked_static_input_is_the_data_it_points_to(tmp_path: Path, store_root: Path) -> None:
    """`static("data/raw.csv")` with `raw.csv -> /shared/raw.csv` stored the link itself, keyed by its text: after
    an edit of the shared data the old result was served (the step read the live file through the stored link).
    Now the data it points to is hashed and copied; a directory with a link out of it is refused, and a pinned
    hash of the link says what to hash instead."""
    (tmp_path / "shared").mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "shared" / "raw.csv").write_text("v1\n")
    (tmp_path / "data" / "raw.csv").symlink_to(tmp_path / "shared" / "raw.csv")
    (tmp_path / "exp.py").write_text('from nixlib import output, static\nraw = static("data/raw.csv")\n'
                                     'a = output(f"cat {raw} > $out/a")\n')
    nw("run", "exp.py", cwd=tmp_path, check=True)
    (tmp_path / "shared" / "raw.csv").write_text("v2\n")
    nw("run", "exp.py", cwd=tmp_path, check=True)
    assert (tmp_path / "nix-workflow-output" / "a" / "a").read_text() == "v2\n"

    link_hash = nw("hash", str(tmp_path / "data" / "raw.csv"), check=True).stdout.strip()
    (tmp_path / "pinned.py").write_text(f'from nixlib import output, static\nraw = static("data/raw.csv", '
                                        f'hash="{link_hash}")\na = output(f"cat {{raw}} > $out/a")\n')
    pinned = nw("run", "pinned.py", cwd=tmp_path)
    assert pinned.returncode == 1 and "is a symlink: static() uses the data it points to" in pinned.stderr

    (tmp_path / "data" / "more.csv").symlink_to(tmp_path / "shared" / "raw.csv")
    (tmp_path / "dir.py").write_text('from nixlib import output, static\nd = static("data")\n'
                                     'a = output(f"cat {d}/raw.csv > $out/a")\n')
    refused = nw("run", "dir.py", cwd=tmp_path)
    assert refused.returncode == 1 and "csv is a symlink to" in refused.stderr
    assert "dir.py:2: static input" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_step_name_with_a_newline_is_refused(tmp_path: Path, store_root: Path) -> None:
    """A sweep keyed by a string with a newline (`{"new\\nline": output(...)}`) was accepted: the name went raw into
    `nw dag` (mermaid, dot) lines, the output link's name and every message naming the step."""
    (tmp_path / "exp.py").write_text('from nixlib import output\nm = {"new\\nline": output("echo 1 > $out/x")}\n')
    proc = nw("run", "exp.py", cwd=tmp_path)
    assert proc.returncode == 1 and "contains a control character" in proc.stderr, proc.stderr
    assert "'m.new\\nline'" in proc.stderr and not (tmp_path / "nix-workflow-output").exists()


def test_a_name_holding_the_same_step_as_another_is_named_in_a_warning_and_selects_it(tmp_path: Path,
                                                                                        store_root: Path) -> None:
    """Two names of one step (a sweep whose members coincide: the same command, env and options) ran it once and
    linked it under the first name only; the second name silently had no output link, and `nw run FILE b` said
    there is no step 'b'. Now a warning names it, and it selects the step it holds."""
    (tmp_path / "exp.py").write_text('from nixlib import output\na = output("echo 1 > $out/x")\n'
                                     'b = output("echo 1 > $out/x")\n')
    proc = nw("run", "exp.py", cwd=tmp_path)
    assert proc.returncode == 0 and "b is a" in proc.stderr and "linked under that other name" in proc.stderr
    again = nw("run", "exp.py", "b", cwd=tmp_path)
    assert again.returncode == 0 and "cached 1" in again.stderr, again.stderr


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_a_last_run_summary_that_is_no_file_never_blocks_or_breaks_show(tmp_path: Path, kind: str) -> None:
    """`nix-workflow-output/.nw-last-run.json` as a FIFO (planted by anyone who can write the output directory)
    made `nw show STEP` block forever reading it; as a directory it raised. It now counts as no summary."""
    import os

    out = tmp_path / "nix-workflow-output"
    out.mkdir()
    os.mkfifo(out / ".nw-last-run.json") if kind == "fifo" else (out / ".nw-last-run.json").mkdir()
    (tmp_path / "store").mkdir()
    proc = nw("show", "a", cwd=tmp_path, env={"NIX_WORKFLOW_STORE": str(tmp_path / "store")}, timeout=20)
    assert proc.returncode == 1 and "no step or path named 'a'" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
