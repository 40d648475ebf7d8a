"""Wave 15 of `nw run`: a data file of the project that a command names without static() is keyed by its content,
as the Snakemake and Luigi front doors key one; each a regression test that failed before its fix."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import nw


def _state(exp: Path, cwd: Path) -> dict[str, str]:
    status = nw("status", str(exp), "--json", cwd=cwd)
    assert status.returncode == 0, status.stderr
    return {s["name"]: s["state"] for s in json.loads(status.stdout)}


def test_a_data_file_a_command_names_in_the_project_is_keyed_by_its_content(tmp_path: Path) -> None:
    """`wc -l {HERE}/data/ref.txt` and `cd {HERE} && cat data/lookup.tsv` (no static()) were keyed by the command text
    alone: after editing the file, `nw run` served the result computed from the old content, and `nw why` said
    nothing changed. A file outside the project, one the command only writes (`> {HERE}/notes.txt`) and one read
    through an output link (an upstream's result, in the store) are not keyed: the untouched steps stay cached."""
    proj = tmp_path / "proj"
    (proj / "data").mkdir(parents=True)
    (proj / "data" / "ref.txt").write_text("a\nb\n")
    (proj / "data" / "lookup.tsv").write_text("k\t1\n")
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("x\n")
    exp = proj / "experiment.py"
    exp.write_text("from pathlib import Path\n"
                   "from nixlib import output\n"
                   "HERE = Path(__file__).parent\n"
                   "ref = output(f'wc -l < {HERE}/data/ref.txt > $out/n')\n"
                   "rel = output(f'cd {HERE} && cut -f2 data/lookup.tsv > $out/v')\n"
                   f"outside = output('cat {elsewhere} > $out/x')\n"
                   "writes = output(f'echo hi > {HERE}/notes.txt; echo 1 > $out/w')\n"
                   "up = output('echo up > $out/u')\n"
                   "link = output(f'cat {HERE}/../nix-workflow-output/up/u > $out/l 2>/dev/null || true; "
                   "echo {up} >/dev/null')\n")
    ran = nw("run", str(exp), cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    out = tmp_path / "nix-workflow-output"
    assert (out / "ref" / "n").read_text().strip() == "2"
    assert (out / "rel" / "v").read_text() == "1\n"
    assert set(_state(exp, tmp_path).values()) == {"cached"}  # the written notes.txt keys nothing
    (proj / "data" / "ref.txt").write_text("a\nb\nc\n")
    (proj / "data" / "lookup.tsv").write_text("k\t2\n")
    elsewhere.write_text("y\n")  # (outside the project: documented as not keyed)
    assert _state(exp, tmp_path) == {"ref": "to run", "rel": "to run", "outside": "cached", "writes": "cached",
                                     "up": "cached", "link": "cached"}
    why = nw("why", "-f", str(exp), "ref", cwd=tmp_path)
    assert "project file ./data/ref.txt changed" in why.stdout, why.stdout + why.stderr
    ran = nw("run", str(exp), cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert (out / "ref" / "n").read_text().strip() == "3"
    assert (out / "rel" / "v").read_text() == "2\n"
    assert set(_state(exp, tmp_path).values()) == {"cached"}
    shown = nw("show", "rel", cwd=tmp_path)  # the record's keyed project files are listed with its inputs
    assert "  project file ./data/lookup.tsv: " in shown.stdout, shown.stdout + shown.stderr


def test_files_a_command_writes_or_only_tests_for_are_not_keyed_and_files_it_reads_are() -> None:
    """The words whose content keys a step (nixlib.codefiles.data_words, for every front door): a file the command
    writes with `touch`, `rm`, `mkdir` or as the destination of `cp`/`mv`, or only tests for in `[ -e … ]` / `test
    -f …` (a flag another process creates while the step runs), would change the key under a running step, or after
    every run; a file it reads (also one named after a tool's `-f` option) must stay keyed."""
    from nixlib.codefiles import data_words

    command = ("touch /p/STARTED; while [ ! -e /p/GO ]; do sleep 1; done; mkdir -p /p/out; rm -f /p/old.csv; "
               "cp /p/a.csv /p/b.csv; mv /p/c.csv /p/d.csv; test -f /p/e.csv && cat /p/e.csv; "
               "[[ -s /p/flag.txt ]]; grep -f /p/pat.txt /p/in.tsv > /p/res.tsv")
    assert data_words(command) == ("/p/a.csv", "/p/c.csv", "/p/e.csv", "/p/pat.txt", "/p/in.tsv")


def test_a_sentinel_file_the_step_touches_in_the_project_does_not_change_its_key(tmp_path: Path) -> None:
    """A step that touches a marker and waits for another in the experiment's directory: keyed by content, the
    marker's appearance changed its key, so the step was "to run" again right after it ran."""
    exp = tmp_path / "experiment.py"
    exp.write_text("from pathlib import Path\nfrom nixlib import output\nHERE = Path(__file__).parent\n"
                   "s = output(f'touch {HERE}/STARTED; [ -e {HERE}/GO ] || echo no-go; echo 1 > $out/x')\n")
    assert nw("run", str(exp), cwd=tmp_path).returncode == 0
    (tmp_path / "GO").write_text("")
    assert _state(exp, tmp_path) == {"s": "cached"}


def test_a_data_file_a_project_script_opens_is_keyed_by_its_content(tmp_path: Path) -> None:
    """`cd {HERE} && python3 train.py` where train.py reads `open("data/train.csv")`, and `python3 {HERE}/src/ev.py`
    reading `Path(__file__).parent / "ref.txt"`: only the scripts were keyed, so an edited data file served the result
    computed from the old content. A file the script writes (`saver.save(rows, "ckpt.bin")`, a writer called with the
    path as its second argument, as `torch.save(model, "ckpt.pt")` is) keys nothing: the step stays cached."""
    proj = tmp_path / "proj"
    (proj / "data").mkdir(parents=True)
    (proj / "src").mkdir()
    (proj / "data" / "train.csv").write_text("a\nb\n")
    (proj / "src" / "ref.txt").write_text("r1\n")
    (proj / "saver.py").write_text("def save(obj, path):\n    open(path, 'w').write(repr(obj))\n")
    (proj / "train.py").write_text("import saver\nrows = open('data/train.csv').read().split()\n"
                                   "saver.save(rows, 'ckpt.bin')\nprint(len(rows))\n")
    (proj / "src" / "ev.py").write_text("from pathlib import Path\n"
                                        "print((Path(__file__).parent / 'ref.txt').read_text())\n")
    exp = proj / "experiment.py"
    exp.write_text("from pathlib import Path\nfrom nixlib import output\nHERE = Path(__file__).parent\n"
                   "train = output(f'cd {HERE} && python3 train.py > $out/n')\n"
                   "ev = output(f'python3 {HERE}/src/ev.py > $out/e')\n")
    assert nw("run", str(exp), cwd=tmp_path).returncode == 0
    out = tmp_path / "nix-workflow-output"
    assert (out / "train" / "n").read_text() == "2\n" and (proj / "ckpt.bin").exists()
    assert _state(exp, tmp_path) == {"train": "cached", "ev": "cached"}
    (proj / "data" / "train.csv").write_text("a\nb\nc\n")
    (proj / "src" / "ref.txt").write_text("r2\n")
    assert _state(exp, tmp_path) == {"train": "to run", "ev": "to run"}
    assert nw("run", str(exp), cwd=tmp_path).returncode == 0
    assert (out / "train" / "n").read_text() == "3\n"
    assert (out / "ev" / "e").read_text() == "r2\n\n"
    assert _state(exp, tmp_path) == {"train": "cached", "ev": "cached"}


def test_the_files_a_glob_in_a_command_matches_are_keyed_by_content(tmp_path: Path) -> None:
    """`cat {HERE}/data/*.csv`: the pattern named no file, so editing, adding or removing a matched file served the old
    result. Each file the glob matches now is keyed by content."""
    proj = tmp_path / "proj"
    (proj / "data").mkdir(parents=True)
    (proj / "data" / "a.csv").write_text("1\n")
    exp = proj / "experiment.py"
    exp.write_text("from pathlib import Path\nfrom nixlib import output\nHERE = Path(__file__).parent\n"
                   "total = output(f'cat {HERE}/data/*.csv | wc -l > $out/n')\n")
    out = tmp_path / "nix-workflow-output" / "total" / "n"
    assert nw("run", str(exp), cwd=tmp_path).returncode == 0 and out.read_text().strip() == "1"
    (proj / "data" / "b.csv").write_text("2\n3\n")  # added
    assert nw("run", str(exp), cwd=tmp_path).returncode == 0 and out.read_text().strip() == "3"
    (proj / "data" / "a.csv").write_text("1\n4\n")  # edited
    assert nw("run", str(exp), cwd=tmp_path).returncode == 0 and out.read_text().strip() == "4"
    (proj / "data" / "b.csv").unlink()  # removed
    assert nw("run", str(exp), cwd=tmp_path).returncode == 0 and out.read_text().strip() == "2"
    assert _state(exp, tmp_path) == {"total": "cached"}


def test_a_checkout_elsewhere_is_served_the_results_of_another(tmp_path: Path) -> None:
    """`python3 {HERE}/train.py {HERE}/t.csv` in two clones at different paths: the absolute path in the keyed command
    made two keys, so the second clone ran again what the first had realised (a store shared by checkouts and hosts).
    The experiment's directory is relocated in the key (the project files the command names are keyed by content,
    relative to it): a clone whose files differ (data/x.csv) is not served the other's result."""
    for clone in ("a", "b"):
        proj = tmp_path / clone
        (proj / "data").mkdir(parents=True)
        (proj / "train.py").write_text("import sys\nprint(open(sys.argv[1]).read().strip())\n")
        (proj / "t.csv").write_text("same\n")
        (proj / "data" / "x.csv").write_text(f"{clone}\n")  # different content in each clone
        (proj / "experiment.py").write_text(
            "from pathlib import Path\nfrom nixlib import output\nHERE = Path(__file__).parent\n"
            "m = output(f'python3 {HERE}/train.py {HERE}/t.csv > $out/x')\n"
            "d = output(f'cat {HERE}/data/*.csv > $out/x')\n")
        ran = nw("run", str(proj / "experiment.py"), cwd=proj)
        assert ran.returncode == 0, ran.stderr
        assert ("m: cached" in ran.stderr) is (clone == "b"), ran.stderr  # b is served a's result
        assert (proj / "nix-workflow-output" / "d" / "x").read_text() == f"{clone}\n"
