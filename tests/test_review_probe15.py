"""Review of wave 15's keying heuristics (which project files key a step): each bug a regression test that failed
before its fix, and the heuristics fuzzed (nixlib.codefiles.data_words, command_data_paths, script_data_words,
nixlib.codefiles.changed_directories, nixlib.pycode.written_strings never fail and a path a call reads stays keyed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nixlib import codefiles, pycode
from tests.helpers import nw

FUZZ = settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


def _written(source: str) -> set[str]:
    return pycode.written_strings(compile(source, "s.py", "exec", dont_inherit=True))


# --- bugs ---------------------------------------------------------------------------------------------------------

def test_a_path_a_writer_derives_from_the_file_the_code_reads_stays_keyed() -> None:
    """`df.to_csv(src + ".bak")`, `df.to_parquet(f"{src}.parquet")`, `Path("data/in.csv").with_suffix(".parquet")`:
    the file read (`src`) was taken for a written path (any load inside a writer's call counted), so it was not
    keyed and an edited data/in.csv served the old result. The path written itself still counts."""
    assert "data/in.csv" not in _written("src = 'data/in.csv'\ndf = read_csv(src)\ndf.to_csv(src + '.bak')\n")
    assert "data/in.csv" not in _written("src = 'data/in.csv'\ndf = read_csv(src)\ndf.to_parquet(f'{src}.parquet')\n")
    assert "data/in.csv" not in _written("df = read_csv('data/in.csv')\n"
                                         "df.to_parquet(Path('data/in.csv').with_suffix('.parquet'))\n")
    assert "model.pkl" in _written("import joblib\njoblib.dump(m, Path(__file__).parent / 'model.pkl')\n")
    assert "m.pkl" in _written("import joblib, os\njoblib.dump(m, os.path.join(OUT, 'm.pkl'))\n")
    assert "ckpt.pt" in _written("import torch\ntorch.save(model.state_dict(), 'ckpt.pt')\n")
    assert "in.csv" not in _written("import numpy as np\nnp.save('a.npy', np.loadtxt('in.csv'))\n")


def test_nw_run_keys_the_data_file_a_script_derives_its_output_name_from(tmp_path: Path) -> None:
    """End to end: train.py reads `SRC = "data/rows.txt"` and saves beside it (`save(rows, SRC + ".seen")`): an edit
    of data/rows.txt left the step cached and served the count of the old rows."""
    proj = tmp_path / "proj"
    (proj / "data").mkdir(parents=True)
    (proj / "data" / "rows.txt").write_text("a\nb\n")
    (proj / "train.py").write_text("def save(obj, path):\n    open(path, 'w').write(repr(obj))\n\n"
                                   "SRC = 'data/rows.txt'\nrows = open(SRC).read().split()\n"
                                   "save(rows, SRC + '.seen')\nprint(len(rows))\n")
    exp = proj / "experiment.py"
    exp.write_text("from pathlib import Path\nfrom nixlib import output\nHERE = Path(__file__).parent\n"
                   "train = output(f'cd {HERE} && python3 train.py > $out/n')\n")
    ran = nw("run", str(exp), cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    out = tmp_path / "nix-workflow-output"
    assert (out / "train" / "n").read_text() == "2\n"
    (proj / "data" / "rows.txt").write_text("a\nb\nc\n")
    status = nw("status", str(exp), "--json", cwd=tmp_path)
    assert {s["name"]: s["state"] for s in json.loads(status.stdout)} == {"train": "to run"}, status.stdout
    assert nw("run", str(exp), cwd=tmp_path).returncode == 0
    assert (out / "train" / "n").read_text() == "3\n"


def test_a_file_a_command_reads_after_touch_unzip_o_or_cp_t_stays_keyed() -> None:
    """`unzip -o data/raw.zip` (-o: overwrite; the archive is read), `cp -t out/ data/in.csv` (the source, -t names
    the destination) and `touch data/x.csv && tool data/x.csv` (touch keeps the content the tool reads): each file
    was left out as written, so editing it served the old result. What they do write is still left out."""
    assert codefiles.data_words("cd /p && unzip -o data/raw.zip -d $out") == ("/p", "data/raw.zip")
    assert codefiles.data_words("sudo /usr/bin/unzip -o data/raw.zip") == ("/usr/bin/unzip", "data/raw.zip")
    assert codefiles.data_words("cp -t out/ data/in.csv") == ("data/in.csv",)
    assert codefiles.data_words("cp --target-directory=out/ data/in.csv") == ("data/in.csv",)
    assert codefiles.data_words("touch data/x.csv && sort data/x.csv") == ("data/x.csv",)
    assert codefiles.data_words("touch /p/STARTED; cp /p/a.csv /p/b.csv; python t.py -o /p/m.pt") == \
        ("/p/a.csv", "t.py")


def test_a_project_script_python_cannot_compile_is_no_traceback(tmp_path: Path) -> None:
    """A .py script nested too deeply for the compiler (100 000 terms, a 200 000-deep unary minus): compile()
    raised RecursionError/MemoryError out of script_data_words, a traceback instead of keying the step."""
    for name, source in [("plus.py", "x = " + "+".join(["a"] * 100_000) + "\n"),
                         ("neg.py", "x = " + "-" * 200_000 + "1\n")]:
        path = tmp_path / name
        path.write_text(source)
        assert codefiles.script_data_words(str(path)) == ()


def test_many_relative_cds_do_not_hang_the_directory_walk(tmp_path: Path) -> None:
    """`cd /p && cd d0 && cd d1 ...`: each relative cd doubled the directories tried, so 40 of them never finished
    (nw run hung while building the experiment). Run in a child to fail rather than hang on the old code."""
    (tmp_path / "src" / "a").mkdir(parents=True)
    probe = ("import sys\nfrom nixlib import codefiles\n"
             "print(codefiles.changed_directories(sys.argv[1]))\n")
    command = f"cd {tmp_path} && " + " && ".join(f"cd d{i}" for i in range(40)) + " && cd src && cd a"
    ran = subprocess.run([sys.executable, "-c", probe, command], capture_output=True, text=True, timeout=120,
                         cwd=os.getcwd())
    assert ran.returncode == 0, ran.stderr
    assert str(tmp_path) in ran.stdout
    assert codefiles.changed_directories(f"cd {tmp_path} && cd src && cd a") == \
        [str(tmp_path), str(tmp_path / "src"), str(tmp_path / "src" / "a")]
    assert codefiles.changed_directories(f"cd {tmp_path} && cd build && cd ../src") == \
        [str(tmp_path), str(tmp_path / "src")]


# --- fuzz ---------------------------------------------------------------------------------------------------------

SHELL = st.text(alphabet="ab/.-_ \t\n;|&<>()'\"`$=:,[]!io0etcpmvsrdhunz", max_size=120)
WORDS = st.sampled_from(["tee", "touch", "rm", "cp", "mv", "ln", "-t", "-o", "--out", "--save=", "sed", "-i", "[",
                         "]", "test", "-f", "-e", "unzip", "cd", "pushd", "$(dirname", ")", ">", ">>", "2>", "|",
                         "&&", ";", "'a b/c.txt'", '"d/e.csv"', "/p/x.csv", "data/y.tsv", "z.fa", "..", "src"])
COMMANDS = st.one_of(SHELL, st.lists(WORDS, max_size=25).map(" ".join), st.text(max_size=80))


@FUZZ
@given(text=COMMANDS)
def test_data_words_and_command_data_paths_never_fail(text: str) -> None:
    found = codefiles.data_words(text)
    assert isinstance(found, tuple) and len(set(found)) == len(found)
    assert all(isinstance(w, str) and w and w in text for w in found)
    paths = codefiles.command_data_paths(text, "/nix/store", ["/p"])
    assert all(os.path.isabs(p) and not p.startswith("/nix/store/") for p in paths)
    for d in codefiles.changed_directories(text) + codefiles.python_path_directories(text):
        assert os.path.isabs(d) and os.path.isdir(d)


@FUZZ
@given(word=st.from_regex(r"[a-z]{1,6}/[a-z]{1,6}\.(csv|tsv|fa)", fullmatch=True),
       writer=st.sampled_from(["tee", "touch", "rm -f", "cp x.bin", "-o", "--output", "sed -i s/a/b/", "[ -f"]))
def test_a_word_a_command_also_reads_stays_keyed(word: str, writer: str) -> None:
    """A file named by a writing spelling and read again (`cat w`) by the same command is keyed, except what tee,
    rm, cp or mv overwrite (their old content is not what the step reads)."""
    command = f"tool {writer} {word} ; cat {word}"
    if writer in ("tee", "rm -f", "cp x.bin"):
        return
    assert word in codefiles.data_words(command)


@FUZZ
@given(data=st.binary(max_size=300))
def test_script_data_words_never_fail_on_any_bytes(tmp_path_factory, data: bytes) -> None:  # type: ignore[no-untyped-def]
    d = tmp_path_factory.mktemp("s")
    for name in ("x.py", "x.R"):
        (d / name).write_bytes(data)
        found = codefiles.script_data_words(str(d / name))
        assert isinstance(found, tuple) and all(isinstance(w, str) and w for w in found)


NAME = st.sampled_from(["np", "df", "torch", "joblib", "os.path", "Path", "pd", "json", "x"])
METHOD = st.sampled_from(["save", "to_csv", "dump", "load", "loadtxt", "read_csv", "join", "with_suffix", "open",
                          "imwrite", "export", "str", "f"])
CONST = st.sampled_from(["'in.csv'", "'out.npy'", "'data/r.tsv'", "SRC", "SRC + '.bak'", "f'{SRC}.x'", "m", "1"])


def _expr(depth: int) -> st.SearchStrategy[str]:
    if depth == 0:
        return CONST
    inner = _expr(depth - 1)
    call = st.builds(lambda n, m, args, kw: f"{n}.{m}({', '.join([*args, *(f'k={a}' for a in kw)])})",
                     NAME, METHOD, st.lists(inner, max_size=3), st.lists(inner, max_size=1))
    return st.one_of(inner, call, st.builds(lambda a, b: f"({a} / {b})", inner, inner))


@FUZZ
@given(lines=st.lists(_expr(3), min_size=1, max_size=4))
def test_written_strings_never_fail_and_keep_what_a_reader_call_reads(lines: list[str]) -> None:
    """Generated call expressions: written_strings never raises; a path given to a reader (`np.loadtxt('in.csv')`),
    wrapped as the argument of any writer, is never taken for a written path."""
    source = "SRC = 'data/r.tsv'\n" + "\n".join(lines) + "\nnp.save('out.npy', np.loadtxt('in.csv'))\n"
    found = _written(source)
    assert all(isinstance(w, str) and w for w in found)
    if "in.csv" not in source.replace("np.loadtxt('in.csv')", ""):
        assert "in.csv" not in found
