"""Wave 14 probe of `nw run experiment.py` with experiments written the way ML researchers write them (a script
run after `cd` into the project, `python -m`, steps kept in a dataclass or a class): each a regression test that
failed before its fix."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import nw


def _state(exp: Path, cwd: Path) -> dict[str, str]:
    status = nw("status", str(exp), "--json", cwd=cwd)
    assert status.returncode == 0, status.stderr
    return {s["name"]: s["state"] for s in json.loads(status.stdout)}


def test_a_script_run_after_cd_into_the_project_is_keyed_by_its_content(tmp_path: Path) -> None:
    """`cd {HERE} && python3 train.py` and `cd {HERE} && python3 -m src.fit` (a step runs in $out, so a researcher
    changes into the project first) were keyed by the command text alone: after editing train.py, a helper it
    imports, or the package `-m` runs, `nw run` served the old result. Scripts named relative to a project directory
    the command changes into (or puts on PYTHONPATH for -m) are keyed as absolute ones are."""
    proj = tmp_path / "proj"
    (proj / "src").mkdir(parents=True)
    (proj / "train.py").write_text("import helper\nprint('train', helper.V)\n")
    (proj / "helper.py").write_text("V = 1\n")
    (proj / "src" / "__init__.py").write_text("")
    (proj / "src" / "fit.py").write_text("print('fit v1')\n")
    exp = proj / "experiment.py"
    exp.write_text("from pathlib import Path\n"
                   "from nixlib import output\n"
                   "HERE = Path(__file__).parent\n"
                   "rel = output(f'cd {HERE} && python3 train.py > $out/r.txt')\n"
                   "mod = output(f'cd {HERE}; python3 -m src.fit > $out/m.txt')\n"
                   "pp = output(f'PYTHONPATH={HERE} python3 -m src.fit > $out/p.txt')\n"
                   "other = output('echo 1 > $out/o.txt')\n")
    ran = nw("run", str(exp), cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    out = tmp_path / "nix-workflow-output"
    assert (out / "rel" / "r.txt").read_text() == "train 1\n"
    (proj / "helper.py").write_text("V = 2\n")
    (proj / "src" / "fit.py").write_text("print('fit v2')\n")
    assert _state(exp, tmp_path) == {"rel": "to run", "mod": "to run", "pp": "to run", "other": "cached"}
    ran = nw("run", str(exp), cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert (out / "rel" / "r.txt").read_text() == "train 2\n"
    assert (out / "mod" / "m.txt").read_text() == "fit v2\n"
    assert (out / "pp" / "p.txt").read_text() == "fit v2\n"
    assert set(_state(exp, tmp_path).values()) == {"cached"}  # a comment-free re-run re-runs nothing


def test_steps_kept_in_a_dataclass_or_a_class_are_named_and_run(tmp_path: Path) -> None:
    """`exps = [Exp(model=..., ev=...) for seed in ...]` (a dataclass per run) and `class Cfg: report = output(...)`
    were not reached: `nw run experiment.py` warned that the steps were defined but not run, and named them
    `step-<hash>`. A dataclass's fields and the attributes of a class (or object of a class) the experiment defines
    name them as a dict's keys do (`exps.0.model`, `Cfg.report`, `run.extra`)."""
    exp = tmp_path / "experiment.py"
    exp.write_text("from dataclasses import dataclass\n"
                   "from nixlib import output\n"
                   "@dataclass\n"
                   "class Exp:\n"
                   "    model: str\n"
                   "    ev: str\n"
                   "def make(seed):\n"
                   "    m = output(f'echo seed={seed} > $out/m')\n"
                   "    return Exp(m, output(f'cat {m}/m > $out/e'))\n"
                   "exps = [make(s) for s in (1, 2)]\n"
                   "class Cfg:\n"
                   "    report = output(f'cat {exps[0].ev}/e {exps[1].ev}/e > $out/r')\n"
                   "class Run:\n"
                   "    def __init__(self):\n"
                   "        self.extra = output('echo extra > $out/x')\n"
                   "run = Run()\n")
    ran = nw("run", str(exp), cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert "defined but not run" not in ran.stderr, ran.stderr
    out = tmp_path / "nix-workflow-output"
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert names == ["Cfg.report", "exps.0.ev", "exps.0.model", "exps.1.ev", "exps.1.model", "run.extra"], names
    assert (out / "Cfg.report" / "r").read_text() == "seed=1\nseed=2\n"
    one = nw("run", str(exp), "exps.1", cwd=tmp_path)
    assert one.returncode == 0 and "exps.1.ev: cached" in one.stderr, one.stderr


def test_a_step_named_on_the_command_line_is_linked_and_kept_by_gc(tmp_path: Path) -> None:
    """`nw run experiment.py shared.data` (a step of a project module the experiment imports, which README says runs
    when named on the command line) ran it but linked no nix-workflow-output/shared.data: the result the user asked
    for had no GC root, and the next `nw gc` removed it. A step named as a target is linked as a top-level one is."""
    (tmp_path / "shared.py").write_text("from nixlib import output\ndata = output('seq 1 3 > $out/d.txt')\n")
    exp = tmp_path / "experiment.py"
    exp.write_text("import shared\nfrom nixlib import output\n"
                   "model = output(f'wc -l < {shared.data}/d.txt > $out/m')\n")
    ran = nw("run", str(exp), "shared.data", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    link = tmp_path / "nix-workflow-output" / "shared.data"
    assert (link / "d.txt").read_text() == "1\n2\n3\n"
    gc = nw("gc", "--min-age", "0", cwd=tmp_path)
    assert gc.returncode == 0, gc.stderr
    assert (link / "d.txt").read_text() == "1\n2\n3\n"
    assert _state(exp, tmp_path)["shared.data"] == "cached"


def test_nw_why_of_a_step_that_failed_says_it_failed(tmp_path: Path) -> None:
    """After `nw run -k` of a sweep whose member failed, `nw why grid.0.1.64` answered that no realisation of it is
    recorded because "it never ran here, or `nw gc` removed it", although it ran and failed in that very run (and
    its dependant, skipped, was described the same way). It says the step failed (or was skipped) and why."""
    exp = tmp_path / "experiment.py"
    exp.write_text("from nixlib import output\n"
                   "grid = {bs: output(f'test {bs} -lt 64; echo {bs} > $out/m') for bs in (32, 64)}\n"
                   "best = output(f\"cat {grid[32]}/m {grid[64]}/m > $out/all\")\n")
    ran = nw("run", str(exp), "-k", cwd=tmp_path)
    assert ran.returncode == 1, ran.stderr
    why = nw("why", "grid.64", cwd=tmp_path)
    assert why.returncode == 0, why.stderr
    assert "never ran here" not in why.stdout and "failed in the last run" in why.stdout, why.stdout
    assert "exited with status 1" in why.stdout, why.stdout
    why = nw("why", "best", cwd=tmp_path)
    assert "never ran here" not in why.stdout and "skipped in the last run" in why.stdout, why.stdout
    assert "grid.64" in why.stdout, why.stdout
    # edited since (its recipe differs from the failed run's): still not "never ran here"
    exp.write_text(exp.read_text().replace("-lt 64", "-lt 63"))
    why = nw("why", "grid.64", cwd=tmp_path)
    assert "never ran here" not in why.stdout, why.stdout
    assert "failed in the last run here, and its recipe has changed since" in why.stdout, why.stdout


def test_a_config_file_opened_by_a_relative_path_from_elsewhere_is_a_clear_error(tmp_path: Path) -> None:
    """`cfg = json.load(open("cfg.json"))` in an experiment run as `nw run proj/experiment.py` from another
    directory failed with a raw `FileNotFoundError: [Errno 2] No such file or directory: 'cfg.json'` and no word on
    why the file beside the experiment was not found. The error names the file, says where relative paths are taken
    from and how to write the path so it works from anywhere; no raw [Errno]."""
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "cfg.json").write_text('{"n": 3}\n')
    (proj / "experiment.py").write_text("import json\nfrom nixlib import output\n"
                                        "cfg = json.load(open('cfg.json'))\n"
                                        "data = output(f\"echo {cfg['n']} > $out/x\")\n")
    ran = nw("run", "proj/experiment.py", cwd=tmp_path)
    assert ran.returncode == 1 and "Traceback" not in ran.stderr, ran.stderr
    assert "[Errno" not in ran.stderr, ran.stderr
    assert "experiment.py:3" in ran.stderr and "cfg.json" in ran.stderr, ran.stderr
    assert "Path(__file__).parent / 'cfg.json'" in ran.stderr and str(proj) in ran.stderr, ran.stderr
    ran = nw("run", "experiment.py", cwd=proj)
    assert ran.returncode == 0, ran.stderr


def test_a_module_on_a_double_quoted_pythonpath_that_extends_it_is_keyed(tmp_path: Path) -> None:
    """`PYTHONPATH="${PYTHONPATH}:{HERE}" python3 -m src.fit` (keeping what the environment had, as shell scripts
    do) was not recognised, so an edit of src/fit.py served the old result."""
    proj = tmp_path / "proj"
    (proj / "src").mkdir(parents=True)
    (proj / "src" / "__init__.py").write_text("")
    (proj / "src" / "fit.py").write_text("print('fit v1')\n")
    exp = proj / "experiment.py"
    exp.write_text("from pathlib import Path\n"
                   "from nixlib import output\n"
                   "HERE = Path(__file__).parent\n"
                   "pp = output(f'PYTHONPATH=\"${{PYTHONPATH:-}}:{HERE}\" python3 -m src.fit > $out/p.txt')\n")
    ran = nw("run", str(exp), cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert (tmp_path / "nix-workflow-output" / "pp" / "p.txt").read_text() == "fit v1\n"
    (proj / "src" / "fit.py").write_text("print('fit v2')\n")
    assert _state(exp, tmp_path) == {"pp": "to run"}
    ran = nw("run", str(exp), cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert (tmp_path / "nix-workflow-output" / "pp" / "p.txt").read_text() == "fit v2\n"


def test_a_script_a_shell_script_runs_is_keyed_with_it(tmp_path: Path) -> None:
    """`bash {HERE}/run.sh` where run.sh changes into its directory and runs `python3 train.py`: run.sh was keyed by
    its content, but not train.py, so an edit of train.py served the old result. The code files a shell script names
    beside it or below are keyed with it (as a Python script is with its local imports)."""
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "run.sh").write_text('out=$PWD\ncd "$(dirname "$0")"\npython3 train.py > "$out/r.txt"\n')
    (proj / "train.py").write_text("print('v1')\n")
    exp = proj / "experiment.py"
    exp.write_text("from pathlib import Path\n"
                   "from nixlib import output\n"
                   "HERE = Path(__file__).parent\n"
                   "run = output(f'bash {HERE}/run.sh')\n")
    ran = nw("run", str(exp), cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    result = tmp_path / "nix-workflow-output" / "run" / "r.txt"
    assert result.read_text() == "v1\n"
    (proj / "train.py").write_text("print('v2')\n")
    assert _state(exp, tmp_path) == {"run": "to run"}
    ran = nw("run", str(exp), cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert result.read_text() == "v2\n"
    assert _state(exp, tmp_path) == {"run": "cached"}
