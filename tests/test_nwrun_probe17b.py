"""Wave 17b of `nw run`: a step that reads another step's result through its output link
(`nix-workflow-output/train/model.txt` named in ev.py), without interpolating that step, is refused before anything
runs; it was run (after a first run that failed with a misleading error) and then served forever, whatever the other
step produced. A step that does depend on the step it reads that way is not refused."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.helpers import nw, tree_snapshot

_HEAD = "from pathlib import Path\nfrom nixlib import output\nHERE = Path(__file__).parent\n"


def _state(exp: Path, cwd: Path, *more: str) -> dict[str, str]:
    status = nw("status", str(exp), "--json", *more, cwd=cwd)
    assert status.returncode == 0, status.stderr
    return {s["name"]: s["state"] for s in json.loads(status.stdout)}


def _refused(proc, step: str, shown: str, other: str, form: str) -> None:
    said = proc.stdout + proc.stderr
    assert proc.returncode != 0, said
    assert "Traceback" not in said and "[Errno" not in said, said
    error = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1, said
    assert f"step '{step}'" in error[0] and shown in error[0] and f"step '{other}'" in error[0], said
    assert form in error[0] and "nothing was run" in error[0], said


def test_a_step_reading_another_steps_output_link_is_refused(tmp_path: Path, store_root: Path) -> None:
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "params.txt").write_text("v1\n")
    (proj / "train.py").write_text("print(open('params.txt').read().strip())\n")
    (proj / "ev.py").write_text("print('score of', open('nix-workflow-output/train/model.txt').read().strip())\n")
    exp = proj / "experiment.py"
    exp.write_text(_HEAD + "train = output(f'cd {HERE} && python3 train.py > $out/model.txt')\n"
                           "ev = output(f'cd {HERE} && python3 ev.py > $out/score.txt')\n")
    links = proj / "nix-workflow-output"
    # (before: the first run failed, saying a relative path means $out; the second one ran ev against the link of the
    # first run's train, and ev was then served whatever train produced)
    for _ in range(2):
        before = tree_snapshot(store_root)
        _refused(nw("run", str(exp), cwd=proj), "ev", "nix-workflow-output/train/model.txt (named in ev.py)", "train",
                 "`{train}/model.txt` in experiment.py")
        after = tree_snapshot(store_root)  # (the first run makes the store's empty directories, as any run does)
        assert after == before if before else not {k for k, v in after.items() if v not in ("dir", b"")}, after
        assert not links.exists()
    _refused(nw("status", str(exp), cwd=proj), "ev", "nix-workflow-output/train/model.txt", "train", "{train}")
    # an existing link (a run of train alone, from an experiment without ev) is refused alike
    alone = proj / "alone.py"
    alone.write_text(_HEAD + "train = output(f'cd {HERE} && python3 train.py > $out/model.txt')\n")
    assert nw("run", str(alone), cwd=proj).returncode == 0
    assert (links / "train" / "model.txt").read_text() == "v1\n"
    _refused(nw("run", str(exp), cwd=proj), "ev", "nix-workflow-output/train/model.txt (named in ev.py)", "train",
             "{train}")
    assert not (links / "ev").exists()
    # the fix the error asks for: ev is run with train's current result
    (proj / "ev.py").write_text("import sys\nprint('score of', open(sys.argv[1]).read().strip())\n")
    exp.write_text(_HEAD + "train = output(f'cd {HERE} && python3 train.py > $out/model.txt')\n"
                           "ev = output(f'cd {HERE} && python3 ev.py {train}/model.txt > $out/score.txt')\n")
    assert nw("run", str(exp), cwd=proj).returncode == 0
    assert (links / "ev" / "score.txt").read_text() == "score of v1\n"
    (proj / "params.txt").write_text("v2\n")
    assert nw("run", str(exp), cwd=proj).returncode == 0
    assert (links / "ev" / "score.txt").read_text() == "score of v2\n"
    assert _state(exp, proj) == {"train": "cached", "ev": "cached"}


def test_a_step_that_depends_on_the_step_whose_link_it_names_is_not_refused(tmp_path: Path) -> None:
    """ev.py's argparse default names train's output link, but ev interpolates train (and is given its file): run,
    never refused, and never stale: the link's file is keyed by content (a script may read it while this run's train
    result is not linked yet), so once the link shows a new result ev runs again. A path under the link directory of
    a name that is no step of this workflow (another experiment's result sharing the directory) is keyed by content."""
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "params.txt").write_text("v1\n")
    (proj / "train.py").write_text("print(open('params.txt').read().strip())\n")
    (proj / "ev.py").write_text(
        "import argparse\np = argparse.ArgumentParser()\n"
        "p.add_argument('--model', default='nix-workflow-output/train/model.txt')\n"
        "print('score of', open(p.parse_args().model).read().strip())\n")
    (proj / "other.py").write_text(
        "import os\np = 'nix-workflow-output/prep/data.txt'\nprint(open(p).read() if os.path.exists(p) else 'none')\n")
    exp = proj / "experiment.py"
    exp.write_text(_HEAD + "train = output(f'cd {HERE} && python3 train.py > $out/model.txt')\n"
                           "ev = output(f'cd {HERE} && python3 ev.py --model {train}/model.txt > $out/score.txt')\n"
                           "other = output(f'cd {HERE} && python3 other.py > $out/o.txt')\n")
    links = proj / "nix-workflow-output"
    for _ in range(3):  # (converges: the link shows train's result from the first run on)
        ran = nw("run", str(exp), cwd=proj)
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert (links / "ev" / "score.txt").read_text() == "score of v1\n"
    assert _state(exp, proj) == {"train": "cached", "ev": "cached", "other": "cached"}
    assert (links / "other" / "o.txt").read_text() == "none\n"
    # another experiment's result, linked as `prep` beside these: keyed by its content
    (proj / "prep.txt").write_text("p1\n")
    prep = proj / "prep.py"
    prep.write_text(_HEAD + "prep = output(f'cp {HERE}/prep.txt $out/data.txt')\n")
    assert nw("run", str(prep), cwd=proj).returncode == 0
    assert _state(exp, proj)["other"] == "to run"
    assert nw("run", str(exp), cwd=proj).returncode == 0
    assert (links / "other" / "o.txt").read_text() == "p1\n\n"
    (proj / "prep.txt").write_text("p2\n")
    assert nw("run", str(prep), cwd=proj).returncode == 0
    assert _state(exp, proj)["other"] == "to run"
    assert nw("run", str(exp), cwd=proj).returncode == 0
    assert (links / "other" / "o.txt").read_text() == "p2\n\n"


def test_a_glob_over_the_links_of_another_out_link_directory_is_refused(tmp_path: Path) -> None:
    """agg.py globs `res/*/m.txt`, the links of `nw run --out-link res`, without interpolating the sweep: found by
    the store path the link leads to, and refused; experiment.nix's command naming a link is refused with `${train}`."""
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "agg.py").write_text("import glob\nprint([open(p).read() for p in sorted(glob.glob('res/*/m.txt'))])\n")
    exp = proj / "experiment.py"
    exp.write_text(_HEAD + "sweep = {lr: output(f'echo {lr} > $out/m.txt') for lr in (1, 2)}\n")
    assert nw("run", "--out-link", "res", str(exp), cwd=proj).returncode == 0
    assert os.path.islink(proj / "res" / "sweep.1")
    exp.write_text(exp.read_text() + "agg = output(f'cd {HERE} && python3 agg.py > $out/all.txt')\n")
    _refused(nw("run", "--out-link", "res", str(exp), cwd=proj), "agg", "res/sweep.1/m.txt (named in agg.py)",
             "sweep.1", "/m.txt` in experiment.py")
    exp.write_text(exp.read_text().replace("python3 agg.py", "python3 agg.py {sweep[1]} {sweep[2]}"))
    assert _state(exp, proj, "--out-link", "res") == {"sweep.1": "cached", "sweep.2": "cached", "agg": "to run"}
    nix = proj / "experiment.nix"
    nix.write_text("let inherit ((import <nixworkflow>).lib) output; in rec {\n"
                   '  train = output "echo v1 > $out/model.txt";\n'
                   '  ev = output "cd ${toString ./.} && cat nix-workflow-output/train/model.txt > $out/s.txt";\n'
                   "}\n")
    _refused(nw("run", str(nix), cwd=proj), "ev", "nix-workflow-output/train/model.txt (named in its command)",
             "train", "`${train}/model.txt` in experiment.nix")
