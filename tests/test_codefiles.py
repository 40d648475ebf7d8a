"""nixlib.codefiles: which words of a command are the project's code files, and their digests."""

from __future__ import annotations

import os
from pathlib import Path

from nixlib import codefiles
from nixlib.statmemo import StatMemo


def test_named_picks_project_scripts_and_executables_only(tmp_path: Path) -> None:
    project, outside = tmp_path / "project", tmp_path / "elsewhere"
    for d in (project / "scripts", project / "bin", outside):
        d.mkdir(parents=True)
    files = {
        "scripts/clean.py": "print(1)\n", "scripts/plot.R": "plot(1)\n", "bin/tool": "#!/bin/sh\n",
        "data.tsv": "a\tb\n", "errors.log": "", "declared.py": "x = 1\n",
    }
    for name, text in files.items():
        (project / name).write_text(text)
    (project / "bin" / "tool").chmod(0o755)
    (outside / "other.py").write_text("y = 2\n")
    command = (f"python scripts/clean.py data.tsv --plot=scripts/plot.R | ./bin/tool 2>> errors.log; "
               f"python {outside}/other.py declared.py missing.py")
    code = codefiles.CodeFiles(StatMemo(tmp_path / "memo"))
    declared = {str(project / "declared.py")}
    found = code.named(codefiles.words(command), [str(project)], declared, str(project))
    assert sorted(os.path.relpath(p, project) for p in found) == ["bin/tool", "scripts/clean.py", "scripts/plot.R"]
    before = dict(found)
    (project / "scripts" / "plot.R").write_text("plot(2)\n")
    after = code.named(codefiles.words(command), [str(project)], declared, str(project))
    assert [os.path.relpath(p, project) for p in after if after[p] != before[p]] == ["scripts/plot.R"]


def test_a_python_script_is_keyed_with_its_local_modules(tmp_path: Path) -> None:
    (tmp_path / "run.py").write_text("import helper\nimport json\n")
    (tmp_path / "helper.py").write_text("from pkg import inner\n")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "inner.py").write_text("VALUE = 1\n")
    code = codefiles.CodeFiles(StatMemo(tmp_path / "memo"))
    first = code.digest(str(tmp_path / "run.py"))
    (tmp_path / "pkg" / "inner.py").write_text("VALUE = 2\n")  # two imports away
    assert code.digest(str(tmp_path / "run.py")) != first


def test_an_executable_data_file_is_not_a_program(tmp_path: Path) -> None:
    """Where every file is executable (a vfat or NTFS mount), a log the command appends to is still data."""
    for name, head in (("errors.log", b"line\n"), ("tool", b"#!/bin/sh\n"), ("binary", b"\x7fELF....")):
        (tmp_path / name).write_bytes(head)
        (tmp_path / name).chmod(0o755)
    code = codefiles.CodeFiles(StatMemo(tmp_path / "memo"))
    found = code.named(["./errors.log", "./tool", "./binary"], [str(tmp_path)], set(), str(tmp_path))
    assert sorted(os.path.basename(p) for p in found) == ["binary", "tool"]


def test_files_named_by_parameter_values(tmp_path: Path) -> None:
    """The texts of a parameter value (nested lists and mappings, paths) that name existing files, by content;
    not a directory, a declared path, a file outside the roots, or a text that is no path."""
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    (project / "sub").mkdir(parents=True)
    elsewhere.mkdir()
    for path in (project / "ref.txt", project / "out.txt", elsewhere / "x.txt"):
        path.write_text(path.name)
    value = {"a": [str(project / "ref.txt"), project / "out.txt"], "b": (str(project / "sub"), "x\ny"), "c": 3,
             "d": str(elsewhere / "x.txt")}
    texts = codefiles.strings_in(value)
    assert texts == [str(project / "ref.txt"), str(project / "out.txt"), str(project / "sub"), str(elsewhere / "x.txt")]
    code = codefiles.CodeFiles(StatMemo(tmp_path / "memo"))
    assert list(code.files_named(texts, {str(project / "out.txt")}, [str(project)])) == [str(project / "ref.txt")]
    anywhere = code.files_named(texts, set())
    assert sorted(anywhere) == sorted([str(project / "ref.txt"), str(project / "out.txt"), str(elsewhere / "x.txt")])


def test_run_modules_are_the_names_after_dash_m() -> None:
    from nixlib.codefiles import command_modules, run_modules

    assert run_modules(["python", "-m", "pkg.tool", "--x", "1"]) == ["pkg.tool"]
    assert run_modules(["/usr/bin/python3", "-mtrain"]) == ["train"]
    assert run_modules(["git", "commit", "-m", "fix: a bug"]) == []  # not a module name
    assert run_modules(["python", "-m"]) == []
    assert command_modules("python3 -m pkg.a in.csv && python -m b.c --x=1; echo -n done") == ["pkg.a", "b.c"]
    assert command_modules("cat a.txt > b.txt") == []
