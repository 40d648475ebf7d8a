"""Probe 21: everyday Snakemake features through the real `snakemake --executor nixworkflow`. Modules (`use rule *
from m as m_*`, `with: params:`, a module's scripts, includes, configs), `include:`d helpers, params and
`unpack()` input functions reading files, `script:` params and config, `--config` overrides, group jobs and local
modules imported by the Snakefile were already keyed right. Three gaps served stale results after an edit, each
closed here and each test failed before its fix: a script declared as an input (`python3 {input.script}`) was
keyed by its content alone, not with the local modules it imports, the scripts it runs or the data and variables it
reads; a script a shell command runs that puts a sibling directory on `sys.path` itself was keyed without the
modules it imports from there (a `script:` was); and a `run:` block's `shell("python3 {input.s}")` or
`{params.s}` did not key what that script imports. The second gap was nw run's and Luigi's too (nixlib)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.test_snakemake import executions, ok, snakemake
from tests.test_snakemake_semantics import wipe, write

pytest.importorskip("snakemake")

pytestmark = pytest.mark.slow


def counted(where: Path, log: Path) -> Callable[[], Counter[str]]:
    """A function running the real snakemake in `where` after removing out/: how many times each job ran."""
    def run() -> Counter[str]:
        before = executions(log)
        wipe(where, "out")
        ok(snakemake(where))
        return executions(log) - before
    return run


def check_edits(where: Path, log: Path, edits: list[tuple[str, str, set[str]]], everything: set[str]) -> None:
    """Run, re-run (all restored), then after each edit: exactly the jobs named ran, and a re-run restores all."""
    run = counted(where, log)
    assert set(run()) == everything
    assert not run(), "an unchanged re-run must be restored from the store"
    stale = []
    for name, text, words in edits:
        (where / name).write_text(text)
        got = set(run())
        if got != words:
            stale.append(f"after editing {name}: ran {sorted(got)}, expected {sorted(words)}")
        assert not run(), f"not served after editing {name}"
    assert not stale, stale


# ---------------------------------------------------------------------------------------------------------------
# 1. a script declared as an input and run by the shell command

DECLARED = {
    "Snakefile": '''
rule all:
    input: "out/imp.txt", "out/sh.txt", "out/data.txt", "out/env.txt", "out/plain.txt"
rule imp:
    input: s="tools/imp.py", d="data/a.txt"
    output: "out/imp.txt"
    shell: "python3 {input.s} {input.d} > {output}; echo imp >> $NW_TEST_LOG"
rule sh:
    input: s="tools/run.sh"
    output: "out/sh.txt"
    shell: "bash {input.s} > {output}; echo sh >> $NW_TEST_LOG"
rule data:
    input: s="tools/data.py"
    output: "out/data.txt"
    shell: "python3 {input.s} > {output}; echo data >> $NW_TEST_LOG"
rule env:
    input: s="tools/env.py"
    output: "out/env.txt"
    shell: "python3 {input.s} > {output}; echo env >> $NW_TEST_LOG"
rule plain:
    input: s="tools/plain.py", d="data/a.txt"
    output: "out/plain.txt"
    shell: "python3 {input.s} {input.d} > {output}; echo plain >> $NW_TEST_LOG"
''',
    "tools/imp.py": "import sys\nfrom helper import f\nprint(f(open(sys.argv[1]).read()))\n",
    "tools/helper.py": "def f(x):\n    return x + '1'\n",
    "tools/run.sh": 'cd "$(dirname "$0")"\npython3 inner.py\n',
    "tools/inner.py": "print('i1')\n",
    "tools/data.py": "print(open('config/table.tsv').read())\n",
    "config/table.tsv": "t1\n",
    "tools/env.py": "import os\nprint(os.environ.get('P21_SCALE', '1'))\n",
    "tools/plain.py": "import sys\nprint(open(sys.argv[1]).read())\n",
    "tools/unused.py": "print('unused')\n",
    "data/a.txt": "a\n",
}


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_snakemake_keys_what_a_script_declared_as_an_input_imports_runs_and_reads(
        tmp_path: Path, log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`input: s="tools/imp.py"` with `shell: "python3 {input.s} ..."`: the script's content was keyed (as an input's)
    but not what goes with it when it is not declared: the local module it imports (helper.py), the script a
    declared bash script runs beside it, the data file it opens by a literal path, the variable it reads. Editing
    any of them, or `P21_SCALE=3`, served the old result; editing the script itself or an unrelated file is
    unchanged."""
    where = write(tmp_path / "wf", DECLARED)
    check_edits(where, log, [
        ("tools/helper.py", "def f(x):\n    return x + '2'\n", {"imp"}),
        ("tools/inner.py", "print('i2')\n", {"sh"}),
        ("config/table.tsv", "t2\n", {"data"}),
        ("tools/plain.py", "import sys\nprint(open(sys.argv[1]).read() + '!')\n", {"plain"}),
        ("tools/unused.py", "print('unused!')\n", set()),
    ], {"imp", "sh", "data", "env", "plain"})
    monkeypatch.setenv("P21_SCALE", "3")
    assert set(counted(where, log)()) == {"env"}
    assert (where / "out/imp.txt").read_text() == "a\n2\n"
    assert (where / "out/sh.txt").read_text() == "i2\n"
    assert (where / "out/data.txt").read_text() == "t2\n\n"
    assert (where / "out/env.txt").read_text() == "3\n"


# ---------------------------------------------------------------------------------------------------------------
# 2. a script a shell command runs, importing from a directory it puts on sys.path

LAYOUT = {
    "workflow/Snakefile": '''
include: "rules/a.smk"
rule all:
    input: "out/z.txt", "out/x.txt"
''',
    "workflow/rules/a.smk": '''
rule z:
    output: "out/z.txt"
    shell: "python3 workflow/scripts/z.py > {output}; echo z >> $NW_TEST_LOG"
rule x:
    output: "out/x.txt"
    script: "../scripts/x.py"
''',
    "workflow/scripts/z.py": '''import os, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from zlib2 import k
print(k())
''',
    "workflow/lib/zlib2.py": "def k():\n    return 'k1'\n",
    "workflow/scripts/x.py": '''import os, sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
from wlib import f
open(snakemake.output[0], "w").write(f())
open(os.environ["NW_TEST_LOG"], "a").write("x\\n")
''',
    "workflow/lib/wlib.py": "def f():\n    return 'f1'\n",
}


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_snakemake_keys_modules_a_shell_run_script_imports_from_a_directory_it_puts_on_sys_path(
        tmp_path: Path, log: Path) -> None:
    """The standard layout (workflow/Snakefile, workflow/rules/*.smk, workflow/scripts, workflow/lib): `python3
    workflow/scripts/z.py` where z.py runs `sys.path.insert(0, os.path.join(os.path.dirname(...), "..", "lib"))` and
    imports zlib2 from there. A `script:` doing the same (x.py) was keyed with that module; the shell-run script
    was not, and editing workflow/lib/zlib2.py served the old result."""
    where = write(tmp_path / "wf", LAYOUT)
    check_edits(where, log, [
        ("workflow/lib/zlib2.py", "def k():\n    return 'k2'\n", {"z"}),
        ("workflow/lib/wlib.py", "def f():\n    return 'f2'\n", {"x"}),
    ], {"z", "x"})
    assert (where / "out/z.txt").read_text() == "k2\n"


def test_nw_run_keys_modules_a_script_imports_from_a_directory_it_puts_on_sys_path(tmp_path: Path) -> None:
    """The same gap in nixlib (CodeFiles.named, shared by nw run, Luigi and the Snakemake executor): `nw run` of a
    step running `python3 {HERE}/workflow/scripts/z.py` served the old result after workflow/lib/zlib2.py was
    edited; a module there the script does not import re-runs nothing."""
    from tests.test_gaps_probe18 import _check_nw_run
    root = write(tmp_path / "proj", {**LAYOUT, "workflow/lib/unused.py": "X = 1\n"})
    (root / "experiment.py").write_text(
        "from nixlib.dsl import output\n"
        f"step = output('python3 {root}/workflow/scripts/z.py > $out/v')\n")
    _check_nw_run(root, [("workflow/lib/zlib2.py", "def k():\n    return 'k3'\n")],
                  [("workflow/lib/unused.py", "X = 2\n")])
    assert (root / "nix-workflow-output/step/v").read_text() == "k3\n"


# ---------------------------------------------------------------------------------------------------------------
# 3. a run: block's shell() running a script named through {input.x} or {params.x}

RUNSHELL = {
    "Snakefile": '''
rule all:
    input: "out/r.txt", "out/q.txt", "out/c.txt"
rule r:
    input: s="tools/r.py"
    output: "out/r.txt"
    run:
        shell("python3 {input.s} > {output}; echo r >> $NW_TEST_LOG")
rule q:
    output: "out/q.txt"
    params: s="tools/q.py"
    run:
        shell("python3 {params.s} > {output}; echo q >> $NW_TEST_LOG")
rule c:
    output: "out/c.txt"
    run:
        for n in [1]:
            shell("python3 tools/c.py {n} > {output}; echo c >> $NW_TEST_LOG")
''',
    "tools/r.py": "from rh import v\nprint(v)\n",
    "tools/rh.py": "v = 1\n",
    "tools/q.py": "from qh import v\nprint(v)\n",
    "tools/qh.py": "v = 1\n",
    "tools/c.py": "from ch import v\nprint(v)\n",
    "tools/ch.py": "v = 1\n",
}


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_snakemake_keys_what_a_run_block_shell_runs_through_its_input_or_params(tmp_path: Path, log: Path) -> None:
    """`run: shell("python3 {input.s} > {output}")` and `shell("python3 {params.s} ...")`: the script's content was
    keyed (as an input's, as a param's file) but the template names no file, so the module it imports was not:
    editing it served the old result. (A template naming a variable of the block, `{n}`, still keys the script
    it names literally.)"""
    where = write(tmp_path / "wf", RUNSHELL)
    check_edits(where, log, [
        ("tools/rh.py", "v = 2\n", {"r"}),
        ("tools/qh.py", "v = 2\n", {"q"}),
        ("tools/ch.py", "v = 2\n", {"c"}),
    ], {"r", "q", "c"})
    assert (where / "out/r.txt").read_text() == "2\n"
    assert (where / "out/q.txt").read_text() == "2\n"
