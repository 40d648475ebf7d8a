"""Wave 15 of `nw run` (helper nwrun15): project data files a command names keyed by content however the command
reaches them (pushd, `cd "$(dirname …)"`, a relative cd after one into the project, a project reached through a
symlink), and files it writes by an option (`--save`, `-o`) or `sed -i` not keyed; each a regression test that
failed before its fix."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import nw


def _state(exp: Path, cwd: Path) -> dict[str, str]:
    status = nw("status", str(exp), "--json", cwd=cwd)
    assert status.returncode == 0, status.stderr
    return {s["name"]: s["state"] for s in json.loads(status.stdout)}


def test_data_read_after_pushd_dirname_or_a_relative_cd_is_keyed(tmp_path: Path) -> None:
    """`pushd {HERE}` (the quick test looked for "cd", which "pushd" does not contain), `cd "$(dirname
    {HERE}/experiment.py)"` and `cd {HERE} && cd data` then a relative name: the data file was not keyed, and after
    editing it `nw run` served the result computed from the old content."""
    proj = tmp_path / "proj"
    (proj / "data").mkdir(parents=True)
    for name in ("a", "b", "c"):
        (proj / "data" / f"{name}.csv").write_text(f"{name}1\n")
    exp = proj / "experiment.py"
    exp.write_text("from pathlib import Path\nfrom nixlib import output\nHERE = Path(__file__).parent\n"
                   "pushed = output(f'pushd {HERE} >/dev/null; cat data/a.csv > $out/x')\n"
                   "dirname = output(f'cd \"$(dirname {HERE}/experiment.py)\" && cat data/b.csv > $out/x')\n"
                   "twice = output(f'cd {HERE} && cd data && cat c.csv > $out/x')\n")
    ran = nw("run", str(exp), cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert _state(exp, tmp_path) == {"pushed": "cached", "dirname": "cached", "twice": "cached"}
    for name in ("a", "b", "c"):
        (proj / "data" / f"{name}.csv").write_text(f"{name}2\n")
    assert _state(exp, tmp_path) == {"pushed": "to run", "dirname": "to run", "twice": "to run"}
    assert nw("run", str(exp), cwd=tmp_path).returncode == 0
    out = tmp_path / "nix-workflow-output"
    assert [(out / n / "x").read_text() for n in ("pushed", "dirname", "twice")] == ["a2\n", "b2\n", "c2\n"]


def test_a_project_reached_through_a_symlink_keys_files_named_by_their_real_path(tmp_path: Path) -> None:
    """`HERE = Path(__file__).resolve().parent` (the usual spelling in ML code) with nw started through a linked
    directory: the command names the project's files by their real path, outside the experiment's directory as nw
    named it, so neither the data file nor the script was keyed and editing them served the old results."""
    real = tmp_path / "real"
    (real / "data").mkdir(parents=True)
    (real / "data" / "a.csv").write_text("1\n")
    (real / "train.py").write_text("print('v1')\n")
    (tmp_path / "link").symlink_to(real)
    exp = tmp_path / "link" / "experiment.py"
    exp.write_text("from pathlib import Path\nfrom nixlib import output\nHERE = Path(__file__).resolve().parent\n"
                   "data = output(f'cat {HERE}/data/a.csv > $out/x')\n"
                   "code = output(f'cd {HERE} && python3 train.py > $out/x')\n")
    assert nw("run", str(exp), cwd=tmp_path).returncode == 0
    assert _state(exp, tmp_path) == {"data": "cached", "code": "cached"}
    (real / "data" / "a.csv").write_text("2\n")
    (real / "train.py").write_text("print('v2')\n")
    assert _state(exp, tmp_path) == {"data": "to run", "code": "to run"}
    why = nw("why", "-f", str(exp), "data", cwd=tmp_path)
    assert "project file ./data/a.csv changed" in why.stdout, why.stdout + why.stderr


def test_a_file_a_command_writes_by_an_option_or_sed_i_is_not_keyed_a_file_it_reads_is() -> None:
    """`python train.py --save /p/model.pt`, `tool -o /p/x.csv`, `--output=…`, `sed -i … /p/cfg.txt`: keyed by content,
    the file the step writes changed with every run and the step never hit. A file the command also reads
    (`--resume /p/m.pt --save /p/m.pt`), a `sed` without -i, a `sed -f` script and an option that only starts like
    one (`--outlier-file`) stay keyed."""
    from nixlib.codefiles import data_words

    assert data_words("python3 /p/train.py --data /p/a.csv --save /p/model.pt --save_path=/p/m2.pt") \
        == ("/p/train.py", "/p/a.csv")
    assert data_words("tool -o /p/x.csv --output=/p/y.csv /p/in.csv") == ("/p/in.csv",)
    assert "/p/my z.csv" not in data_words("tool --out-file '/p/my z.csv' /p/in.csv")
    assert data_words("python3 t.py --resume /p/m.pt --save /p/m.pt") == ("t.py", "/p/m.pt")
    assert data_words("sed -i 's/a/b/' /p/cfg.txt /p/c2.txt") == ("s/a/b/",)
    assert data_words("sed -i -f /p/s.sed /p/t.txt") == ("/p/s.sed",)
    assert data_words("sed 's/a/b/' /p/in.txt") == ("s/a/b/", "/p/in.txt")
    assert data_words("tool --outlier-file /p/o.csv") == ("/p/o.csv",)


def test_a_training_step_that_saves_its_model_into_the_project_is_cached_on_re_run(tmp_path: Path) -> None:
    """`cd {HERE} && python3 train.py --data data/a.csv --save model.pt` (the model differs at every run): the saved
    model was keyed as a data file the step reads, so `nw run` trained again every time; the data it reads is
    still keyed."""
    proj = tmp_path / "proj"
    (proj / "data").mkdir(parents=True)
    (proj / "data" / "a.csv").write_text("1\n")
    (proj / "train.py").write_text("import os, sys\nargs = dict(zip(sys.argv[1::2], sys.argv[2::2]))\n"
                                   "open(args['--save'], 'w').write(os.urandom(8).hex())\n"
                                   "print(open(args['--data']).read(), end='')\n")
    exp = proj / "experiment.py"
    exp.write_text("from pathlib import Path\nfrom nixlib import output\nHERE = Path(__file__).parent\n"
                   "model = output(f'cd {HERE} && python3 train.py --data data/a.csv --save model.pt > $out/x')\n")
    for _ in range(2):
        ran = nw("run", str(exp), cwd=tmp_path)
        assert ran.returncode == 0, ran.stderr
    assert (proj / "model.pt").exists()
    assert _state(exp, tmp_path) == {"model": "cached"}
    (proj / "data" / "a.csv").write_text("2\n")
    assert _state(exp, tmp_path) == {"model": "to run"}


def test_an_unreadable_data_or_script_file_a_command_names_is_not_keyed_and_nw_runs() -> None:
    """A project file the running user cannot read (chmod 000), named by a command: hashing it raised nar's
    UnreadableFile ("cannot archive …: its bytes cannot be stored"), not the OSError the keying skips, so `nw run`
    refused the whole experiment with a message about storing a file nothing was storing. The step cannot read
    the file either: it is not keyed, and the step runs (here it reports that it could not read it)."""
    import os

    from tests.unixusers import shared_store

    with shared_store("nwrun15b") as shared:
        home = shared.users["a"].home
        for name in ("secret.csv", "secret.py"):
            (home / name).write_text("print(1)\n")
            os.chown(home / name, shared.users["a"].uid, shared.users["a"].gid)
            (home / name).chmod(0)
        shared.experiment("a", "from pathlib import Path\nHERE = Path(__file__).parent\n"
                               "data = output(f'cat {HERE}/secret.csv > $out/x || echo unreadable > $out/x')\n"
                               "code = output(f'python3 {HERE}/secret.py > $out/x || echo unreadable > $out/x')\n")
        ran = shared.nw("a", "run", "exp.py")
        assert ran.returncode == 0, ran.stderr
        assert "cannot be stored" not in ran.stderr
        out = home / "nix-workflow-output"
        assert [(out / n / "x").read_text() for n in ("data", "code")] == ["unreadable\n", "unreadable\n"]
