"""Lineage by record, not by object, and step names checked where they are defined (issue 8, items 5 and 6)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from nixlib.engine import Engine
from nixlib.recipe import Recipe
from nixlib.runs import _link_outputs
from nixlib.store import Store
from tests.helpers import nw, tree_snapshot
from tests.nixcheck import require_nix

LIB = "inherit ((import <nixworkflow>).lib) output static;"

TWINS = '''from nixlib import output
up_a = output("echo A > $out/a")
up_b = output("echo B > $out/b")
predict_base = output(f"cat {up_a}/a > /dev/null; echo same > $out/x")
predict_dup = output(f"cat {up_b}/b > /dev/null; echo same > $out/x ; true")
'''


def objects(*names: str) -> dict[str, str]:
    """name -> the object its output link points at."""
    return {n: os.path.basename(os.readlink(f"nix-workflow-output/{n}")) for n in names}


@pytest.fixture
def twins() -> dict[str, str]:
    Path("experiment.py").write_text(TWINS)
    nw("run", "experiment.py", check=True)
    objs = objects("up_a", "up_b", "predict_base", "predict_dup")
    assert objs["predict_base"] == objs["predict_dup"]  # the premise: two recipes, one object
    return objs


@pytest.mark.parametrize("how", ["name", "link"])
def test_show_of_steps_sharing_an_object_names_each_step(twins: dict[str, str], how: str) -> None:
    for step, up, other_up, marker in (("predict_dup", "up_b", "up_a", "; true"),
                                       ("predict_base", "up_a", "up_b", None)):
        what = step if how == "name" else f"nix-workflow-output/{step}"
        text = nw("show", what, check=True).stdout
        assert text.startswith(f"step:         {step}\n")
        command = next(line for line in text.splitlines() if line.startswith("command:"))
        assert (marker in command) if marker else ("; true" not in command)
        assert twins[up] in text and twins[other_up] not in text
        doc = json.loads(nw("show", what, "--json", check=True).stdout)
        assert doc["name"] == step


def test_lineage_and_log_of_steps_sharing_an_object(twins: dict[str, str]) -> None:
    for step, up, other_up in (("predict_dup", "up_b", "up_a"), ("predict_base", "up_a", "up_b")):
        for what in (step, f"nix-workflow-output/{step}"):
            text = nw("lineage", what, check=True).stdout
            assert text.startswith(f"{step} ")
            assert f"└── {up} " in text and other_up not in text
        log = nw("log", step, check=True).stdout
        assert ("; true" in log) == (step == "predict_dup")


def test_bare_store_path_shared_by_two_steps_lists_both(twins: dict[str, str], store_root: Path) -> None:
    path = str(store_root / "store" / twins["predict_dup"])
    proc = nw("show", path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "several steps" in proc.stderr and "'predict_dup'" in proc.stderr and "'predict_base'" in proc.stderr


def test_bare_store_path_of_one_step_is_found_by_content(twins: dict[str, str], store_root: Path) -> None:
    text = nw("show", str(store_root / "store" / twins["up_b"]), check=True).stdout
    assert text.startswith("step:         up_b\n")


FAILING = '''from nixlib import output
good = output("echo ok > $out/ok")
counts = output("echo counting; exit 3")
total = output(f"cat {counts}/counts > $out/total")
'''


def test_failed_and_skipped_steps_are_shown_as_such() -> None:
    Path("experiment.py").write_text(FAILING)
    assert nw("run", "experiment.py", "-k").returncode == 1
    show = nw("show", "counts")
    assert show.returncode == 0, show.stderr
    assert "status:       failed in the last run" in show.stdout and "exited with status 3" in show.stdout
    log_line = next(line for line in show.stdout.splitlines() if line.startswith("log:"))
    log = log_line.split(None, 1)[1]
    assert Path(log).read_text().endswith("\ncounting\n")  # the step's own output
    assert nw("log", "counts", check=True).stdout == Path(log).read_text()

    lineage = nw("lineage", "counts", check=True).stdout
    assert lineage.startswith("counts (failed in the last run:")
    skipped = nw("show", "total", check=True).stdout
    assert "status:       skipped in the last run" in skipped and "depends on 'counts'" in skipped
    assert json.loads(nw("show", "counts", "--json", check=True).stdout)["status"] == "failed"
    assert nw("show", "good", check=True).stdout.startswith("step:         good\n")


BAD_PY_NAMES = [
    ('name="{user}"', "{user}", "it is an absolute path"),
    ('name="../x"', "../x", "it contains '/'"),
    ('name="a/b"', "a/b", "it contains '/'"),
    ('name=""', "", "it is empty"),
    ('name="."', ".", "names a directory"),
    ('name=".."', "..", "names a directory"),
    ('name="a\\0b"', "a\\x00b", "NUL"),
]


@pytest.fixture
def user_file(tmp_path: Path) -> Path:
    """A user's file that a bad name once replaced with a symlink, and a first run so the store exists."""
    Path("warmup.py").write_text('from nixlib import output\nwarm = output("echo w > $out/w")\n')
    nw("run", "warmup.py", check=True)
    path = tmp_path / "precious.txt"
    path.write_text("the user's data\n")
    return path


@pytest.mark.parametrize("arg,shown,why", BAD_PY_NAMES)
def test_bad_name_in_python_is_refused_and_touches_nothing(user_file: Path, store_root: Path, tmp_path: Path,
                                                           arg: str, shown: str, why: str) -> None:
    arg, shown = arg.format(user=user_file), shown.format(user=user_file)
    Path("experiment.py").write_text(f'from nixlib import output\nstep = output("echo hi > $out/x", {arg})\n')
    store_before, work_before = tree_snapshot(store_root), tree_snapshot(tmp_path / "work")
    proc = nw("run", "experiment.py")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"experiment.py:2: step name '{shown}' is not allowed: " in proc.stderr and why in proc.stderr
    assert user_file.read_text() == "the user's data\n" and not user_file.is_symlink()
    assert tree_snapshot(store_root) == store_before
    assert tree_snapshot(tmp_path / "work") == work_before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nw-store", "precious.txt", "work"]


def test_bad_dict_key_in_python_is_refused(user_file: Path, store_root: Path) -> None:
    Path("experiment.py").write_text('from nixlib import output\nmodels = {"../x": output("echo 1 > $out/m")}\n')
    before = tree_snapshot(store_root)
    proc = nw("run", "experiment.py")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "step name 'models.../x' is not allowed" in proc.stderr
    assert tree_snapshot(store_root) == before and not Path("x").exists()


def test_nested_member_names_keep_working() -> None:
    Path("experiment.py").write_text('from nixlib import output\n'
                                     'models = {"small": output("echo s > $out/m"), "big": output("echo b>$out/m")}\n')
    nw("run", "experiment.py", check=True)
    assert Path("nix-workflow-output/models.small/m").read_text() == "s\n"
    assert nw("show", "models.small", check=True).stdout.startswith("step:         models.small\n")


@pytest.mark.parametrize("decl,shown,why", [
    ('"../x" = output "echo hi > $out/x";', "../x", "it contains '/'"),
    ('"" = output "echo hi > $out/x";', "", "it is empty"),
    ('".." = output "echo hi > $out/x";', "..", "names a directory"),
    ('s = output {{ cmd = "echo hi > $out/x"; name = "{user}"; }};', "{user}", "it is an absolute path"),
])
def test_bad_name_in_nix_is_refused_and_touches_nothing(user_file: Path, store_root: Path, tmp_path: Path,
                                                        decl: str, shown: str, why: str) -> None:
    require_nix("nix-instantiate")
    decl, shown = decl.format(user=user_file), shown.format(user=user_file)
    Path("experiment.nix").write_text(f"let {LIB} in\n{{\n  {decl}\n}}\n")
    store_before = tree_snapshot(store_root)
    work_before = set(tree_snapshot(tmp_path / "work"))
    proc = nw("run", "experiment.nix")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"experiment.nix:3: step name '{shown}' is not allowed: " in proc.stderr and why in proc.stderr
    assert user_file.read_text() == "the user's data\n" and not user_file.is_symlink()
    assert tree_snapshot(store_root) == store_before
    assert set(tree_snapshot(tmp_path / "work")) == work_before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nw-store", "precious.txt", "work"]


def test_output_links_never_leave_their_directory(store_root: Path, tmp_path: Path) -> None:
    """The last line of defence: a step name no front door refused still never becomes a link outside."""
    store = Store()
    result = Engine(store).realise(Recipe(name="fine", command="echo x > $out/x"))
    out_dir = tmp_path / "work" / "nix-workflow-output"
    for bad in ("../escaped", "..", "", str(tmp_path / "work" / "abs")):
        recipe = Recipe(name=bad, command="echo x > $out/x")
        _link_outputs(store, SimpleNamespace(named=[bad]), {recipe: result}, out_dir)
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == ["nix-workflow-output"]
    assert [p.name for p in out_dir.iterdir()] == [".nw-last-run.json"] and out_dir.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nw-store", "work"]
