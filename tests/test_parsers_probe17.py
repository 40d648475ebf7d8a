"""Review 17: the parsers of users' files and command lines (nixlib.arguments, notebooks, makefiles, configfiles,
pyimports) fed generated and junk input never raise anything but NixWorkflowError and answer alike twice; and the
stale results (under-keying) and crashes found in them, each a regression test checked to fail on the old code.
Real `nw`, a temporary store (NIX_WORKFLOW_STORE from the test setup)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nixlib import arguments, configfiles, makefiles, notebooks, pyimports
from nixlib.errors import NixWorkflowError
from tests.helpers import nw
from tests.nixcheck import require_nix

FAST = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
_HEAD = "from pathlib import Path\nfrom nixlib import output\nHERE = Path(__file__).parent\n"


def _state(exp: Path, cwd: Path) -> str:
    status = nw("status", str(exp), "--json", cwd=cwd)
    assert status.returncode == 0, status.stderr
    return {s["name"]: s["state"] for s in json.loads(status.stdout)}["s"]


def _run(exp: Path, cwd: Path) -> None:
    ran = nw("run", str(exp), cwd=cwd)
    assert ran.returncode == 0, ran.stdout + ran.stderr


# -- properties: junk in, no crash, the same answer twice ------------------------------------------------------------

_WORDS = st.sampled_from(["run", "status", "--arg", "--argstr", "--", "e.nix", "e.py", "-v", "lr", "0.5", "-x", ""])


@FAST
@given(st.lists(_WORDS | st.text(max_size=5), max_size=12))
def test_split_argv_never_fails_and_loses_no_word(words: list[str]) -> None:
    own, argv, given_ = arguments.split_argv(list(words), frozenset({"run", "status"}))
    assert (own, argv, given_) == arguments.split_argv(list(words), frozenset({"run", "status"}))
    taken = len(own) + len(argv or []) + 3 * len(given_) + (argv is not None)
    assert taken == len(words)


@FAST
@given(st.lists(st.tuples(st.sampled_from(["arg", "argstr"]), st.text(max_size=6), st.text(max_size=6)), max_size=4),
       st.lists(st.text(max_size=5), max_size=3))
def test_arguments_are_checked_with_a_clear_error_and_recorded_faithfully(nix: list[tuple[str, str, str]],
                                                                          argv: list[str]) -> None:
    space = argparse.Namespace(nix_given=nix, nix_arg=[], nix_argstr=[], experiment_argv=argv)
    try:
        given_ = arguments.from_args(space)
    except NixWorkflowError as e:
        assert "\n" not in str(e).strip() or "--arg" in str(e)
        return
    back = arguments.from_json(json.loads(json.dumps(given_.as_json())))
    assert (back.nix, back.argv) == (given_.nix, given_.argv)
    given_.cacheable()


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                     lambda c: st.lists(c, max_size=4) | st.dictionaries(
                         st.sampled_from(["cells", "cell_type", "source", "code", "metadata", "kernelspec", "language",
                                          "name"]) | st.text(max_size=3), c, max_size=4), max_leaves=20)
_CELL_LINES = ["import helpers", "%%bash", "echo hi", "x = !ls", "df.head?", "def f():", "    return 1", "  y = 2",
               "if x:", "else:", "q = '''", "'''", "(", ")", "from __future__ import annotations", "x = await g()",
               "\\", "@dec", "", "# c", "yield 1", "\ufeff", "elif y:", "try:", "except E:", "f'{", "\r"]


@FAST
@given(_JSON | st.binary(max_size=60))
def test_a_notebook_that_is_junk_is_read_without_failing(value: object) -> None:
    data = value if isinstance(value, bytes) else json.dumps(value).encode()
    cells = notebooks.cells(data)
    assert cells == notebooks.cells(data)
    json.dumps(cells)  # (it is hashed as JSON)
    assert notebooks.code(data) == notebooks.code(data)


@FAST
@given(st.lists(st.lists(st.sampled_from(_CELL_LINES), max_size=6).map("\n".join)
                | st.lists(st.sampled_from(_CELL_LINES), max_size=4).map(lambda lines: [x + "\n" for x in lines]),
                max_size=4))
def test_a_notebook_s_code_always_compiles(cells: list[object]) -> None:
    """Its code (what the imports and data files are read from) compiles whatever a cell holds."""
    data = json.dumps({"cells": [{"cell_type": "code", "source": c} for c in cells]}).encode()
    compile(notebooks.code(data), "nb", "exec", dont_inherit=True)


_MAKE_TEXT = st.lists(st.sampled_from([
    "include common.mk", "-include $(DEPS)", "sinclude ../x.mk", "include *.mk", "TOP := ..", "include $(TOP)/a.mk",
    "all: out", "\t$(MAKE) -C sub", "\tmake -sC sub \\", "  -v a:b", "include Makefile", "include .", "include /",
    "X = $(X)", "include $(X)", "\tcd sub && make", "include \x00", "\x89PNG\x00\xff"]) | st.text(max_size=10),
    max_size=8).map("\n".join)


@settings(FAST, max_examples=40)
@given(_MAKE_TEXT, _MAKE_TEXT, st.text(max_size=40) | st.sampled_from(
    ["make", "make -C sub", "time make -sC sub -f ../Makefile", "make -f", "make -C", "make --directory"]))
def test_makefiles_that_are_junk_or_include_each_other_are_read_without_failing(tmp_path_factory: object, top: str,
                                                                                 sub: str, command: str) -> None:
    root = tmp_path_factory.mktemp("mk")  # type: ignore[attr-defined]
    (root / "sub").mkdir()
    (root / "Makefile").write_text(top, errors="surrogateescape")
    (root / "sub" / "Makefile").write_text(sub, errors="surrogateescape")
    (root / "common.mk").write_text(top, errors="surrogateescape")
    os.symlink("loop.mk", root / "loop.mk")
    found = makefiles.of_command(command, [str(root)])
    assert found == makefiles.of_command(command, [str(root)])
    assert all(os.path.isfile(p) for p in found)
    makefiles.targets(top)
    makefiles.of_code([command, "make", "-C", command], [str(root)])


@FAST
@given(st.binary(max_size=80) | st.lists(st.sampled_from(
    ["defaults:", "- base", "- model: x", "- override /o: a", "  - [a]", "_base_: ../c.yaml", "_base_: [1, 'c']",
     "- {a: b}", "!!python/object:x {}", "&a [*a]", "- optional m@p: [x, null]", "- 1: 2", "- null: x", "- c"]),
    max_size=6).map(lambda lines: "\n".join(lines).encode()))
def test_a_yaml_config_that_is_junk_or_includes_itself_is_read_without_failing(tmp_path_factory: object,
                                                                               data: bytes) -> None:
    root = tmp_path_factory.mktemp("yaml")  # type: ignore[attr-defined]
    (root / "c.yaml").write_bytes(data)
    found = configfiles.includes(str(root / "c.yaml"), str(root))
    assert found == configfiles.includes(str(root / "c.yaml"), str(root))
    assert all(os.path.isfile(p) for p in found)


_FINDER = st.binary(max_size=60) | st.lists(st.sampled_from(
    ["MAPPING = {'a': '/x/a'}", "MAPPING: dict = {[1]: 2}", "MAPPING = {{}: 1}", "MAPPING = 1", "MAPPING",
     "MAPPING = {'a': b'x'}", "MAPPING, X = 1, 2", "MAPPING = {'a': '/x' + '/a'}", "MAPPING = " + "-" * 3000 + "1"]),
    max_size=3).map(lambda lines: "\n".join(lines).encode())


@FAST
@given(st.lists(st.text(max_size=20) | st.sampled_from(["import __editable___x_finder", ".", "..", "/", "#"]),
                max_size=5), _FINDER)
def test_pth_files_and_editable_finders_that_are_junk_are_read_without_failing(
        tmp_path_factory: object, lines: list[str], finder: bytes) -> None:
    site = tmp_path_factory.mktemp("site")  # type: ignore[attr-defined]
    (site / "a.pth").write_text("\n".join(lines), errors="surrogateescape")
    (site / "__editable___x_finder.py").write_bytes(finder)
    found = pyimports.editable_dirs(str(site))
    pyimports._EDITABLE.clear()
    assert found == pyimports.editable_dirs(str(site))


def test_a_config_directory_with_a_symlink_loop_is_listed_once(tmp_path: Path) -> None:
    (tmp_path / "conf" / "m").mkdir(parents=True)
    (tmp_path / "conf" / "m" / "a.yaml").write_text("x: 1\n")
    os.symlink("..", tmp_path / "conf" / "m" / "up")
    found = configfiles.files_in(str(tmp_path / "conf"))
    assert found == [str(tmp_path / "conf" / "m" / "a.yaml")]


# -- regressions ------------------------------------------------------------------------------------------------------

def test_a_makefile_s_include_above_its_directory_keys_the_step(tmp_path: Path) -> None:
    """`make -C {HERE}/sub` whose Makefile has `include $(TOP)/common.mk` (TOP := ..): editing common.mk served the
    old result (only code files named beside or below the Makefile were keyed)."""
    proj = tmp_path / "proj"
    (proj / "sub").mkdir(parents=True)
    (proj / "common.mk").write_text("MSG = one\n")
    (proj / "sub" / "Makefile").write_text("TOP := ..\ninclude $(TOP)/common.mk\nall:\n\techo $(MSG) > $(OUT)/o\n")
    exp = proj / "experiment.py"
    exp.write_text(_HEAD + "s = output(f'make -s -C {HERE}/sub OUT=$out all')\n")
    _run(exp, tmp_path)
    assert _state(exp, tmp_path) == "cached"
    (proj / "common.mk").write_text("MSG = two\n")
    assert _state(exp, tmp_path) == "to run"
    _run(exp, tmp_path)
    assert (tmp_path / "nix-workflow-output" / "s" / "o").read_text() == "two\n"


def test_the_makefiles_a_make_reads_through_wrappers_flags_and_recursive_makes(tmp_path: Path) -> None:
    """`time make -C sub`, `env X=1 make -C sub`, `make -sC sub` found no makefile or the wrong one; a recipe's
    `$(MAKE) -C lib` (recursive make) keyed nothing of lib/."""
    (tmp_path / "sub" / "lib").mkdir(parents=True)
    for p in ("Makefile", "sub/Makefile", "sub/lib/Makefile"):
        (tmp_path / p).write_text("all:\n\ttrue\n")
    (tmp_path / "sub" / "Makefile").write_text("all:\n\t$(MAKE) -C lib all\n")
    sub, lib = str(tmp_path / "sub" / "Makefile"), str(tmp_path / "sub" / "lib" / "Makefile")
    for command in ("time make -C sub", "env X=1 make -C sub", "make -sC sub", "nice -n 5 make -C sub all",
                    "{ make -C sub; }"):
        assert makefiles.of_command(command, [str(tmp_path)]) == [sub, lib], command


def test_a_makefile_recipe_s_continued_line_is_not_taken_for_rule_targets() -> None:
    """A recipe line continued with `\\` onto a line with a colon (`  data/x.csv -v $(PWD):/data`) was read as a rule
    whose targets (written files, left out of the data keyed) included data/x.csv: editing it served the old result."""
    text = "all: out.txt\nout.txt: prep.py\n\tpython3 prep.py \\\n      data/x.csv -v $(PWD):/data > $@\n"
    assert makefiles.targets(text) == {"all", "out.txt"}


def test_a_notebook_with_a_shell_cell_is_keyed_by_the_modules_its_other_cells_import(tmp_path: Path) -> None:
    """A `%%bash` cell (or `files = !ls`) made the notebook's code no Python as a whole: the modules every other
    cell imports (helpers.py) were not keyed, and editing them served the old result."""
    (tmp_path / "run_nb.py").write_text(
        "import json, os, sys\nsys.path.insert(0, os.path.dirname(sys.argv[1]))\n"
        "for c in json.load(open(sys.argv[1]))['cells']:\n"
        "    src = ''.join(c['source'])\n"
        "    if c['cell_type'] == 'code' and not src.startswith('%%') and '!' not in src: exec(src)\n")
    (tmp_path / "helpers.py").write_text("def f(): return 1\n")
    cells = [{"cell_type": "code", "metadata": {}, "outputs": [], "source": ["%%bash\n", "echo hi\n"]},
             {"cell_type": "code", "metadata": {}, "outputs": [], "source": ["files = !ls\n"]},
             {"cell_type": "code", "metadata": {}, "outputs": [],
              "source": ["import helpers\n", "print(helpers.f())\n"]}]
    (tmp_path / "nb.ipynb").write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    exp = tmp_path / "experiment.py"
    exp.write_text(_HEAD + "s = output(f'python3 {HERE}/run_nb.py {HERE}/nb.ipynb > $out/o')\n")
    _run(exp, tmp_path)
    assert _state(exp, tmp_path) == "cached"
    (tmp_path / "helpers.py").write_text("def f(): return 2\n")
    assert _state(exp, tmp_path) == "to run"
    _run(exp, tmp_path)
    assert (tmp_path / "nix-workflow-output" / "s" / "o").read_text() == "2\n"


def test_a_notebook_s_kernel_is_part_of_what_running_it_depends_on() -> None:
    """nbconvert and papermill start the kernel kernelspec.name names: another kernel (another interpreter, other
    packages) left the key unchanged when the language was the same or missing."""
    def nb(name: str) -> bytes:
        return json.dumps({"cells": [{"cell_type": "code", "source": "print(1)"}],
                           "metadata": {"kernelspec": {"name": name, "display_name": "x"}}}).encode()
    assert notebooks.cells(nb("python3")) != notebooks.cells(nb("ml-env"))


def test_a_symlinked_config_group_directory_keys_the_step(tmp_path: Path) -> None:
    """`--config-path {HERE}/conf` with conf/model -> ../shared/model: the configs there were not listed (os.walk
    did not follow the link) and editing one served the old result."""
    proj = tmp_path / "proj"
    (proj / "conf").mkdir(parents=True)
    (proj / "shared" / "model").mkdir(parents=True)
    (proj / "shared" / "model" / "a.yaml").write_text("lr: 1\n")
    (proj / "conf" / "config.yaml").write_text("x: 1\n")
    os.symlink("../shared/model", proj / "conf" / "model")
    (proj / "app.py").write_text("import sys; print(open(sys.argv[2] + '/model/a.yaml').read().strip())\n")
    exp = proj / "experiment.py"
    exp.write_text(_HEAD + "s = output(f'python3 {HERE}/app.py --config-path {HERE}/conf > $out/o')\n")
    _run(exp, tmp_path)
    assert _state(exp, tmp_path) == "cached"
    (proj / "shared" / "model" / "a.yaml").write_text("lr: 2\n")
    assert _state(exp, tmp_path) == "to run"


def test_a_junk_editable_finder_is_no_traceback(tmp_path: Path) -> None:
    """An interpreter's site-packages with a `.pth` importing an `__editable___…_finder` whose MAPPING is no mapping
    literal (`{[]: 0}`) crashed `nw run` with a TypeError traceback."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    site = venv / "lib" / f"python3.{sys.version_info.minor}" / "site-packages"
    site.mkdir(parents=True)
    (venv / "bin" / "python").write_text("#!/bin/sh\n")
    (site / "x.pth").write_text("import __editable___x_finder; __editable___x_finder.install()\n")
    (site / "__editable___x_finder.py").write_text("MAPPING: dict = {[]: 0}\n")
    exp = tmp_path / "experiment.py"
    exp.write_text(_HEAD + f"s = output('test -f {venv}/bin/python && echo ok > $out/o')\n")
    ran = nw("run", str(exp), cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert "Traceback" not in ran.stderr


def test_an_arg_value_that_is_not_utf8_is_a_clear_error(tmp_path: Path) -> None:
    """`--argstr name $'\\xff'` gave Nix's raw `[json.exception.parse_error.101] … surrogate` error (and `--arg` blamed
    a file the experiment imports)."""
    require_nix("nix-instantiate")
    exp = tmp_path / "experiment.nix"
    exp.write_text('{ name ? "base" }:\nlet inherit ((import <nixworkflow>).lib) output; in\n'
                   '{ s = output "echo ${name} > $out/l.txt"; }\n')
    for kind, value in (("--argstr", "\udcff\udcfe"), ("--arg", '"\udcff"')):
        ran = nw("run", str(exp), kind, "name", value, cwd=tmp_path)
        assert ran.returncode == 1
        assert f"{kind} name" in ran.stderr and "not UTF-8 text" in ran.stderr, ran.stderr
        assert "json.exception" not in ran.stderr and "Traceback" not in ran.stderr
        assert not (tmp_path / "nix-workflow-output").exists()
