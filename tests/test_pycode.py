"""nixlib.pycode: digests of code that follow edits, not layout, and are the same in every process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

from nixlib import pycode
from tests.helpers import REPO

SOURCE = '''
import json

LIMIT = 3
NAMES = {"a": [1, 2], "b": None}


def helper(x, scale=2):
    # a comment
    return x in {"alpha", "beta", "gamma"} and LIMIT


class Joiner:
    sep = "+"

    def join(self, parts):
        return self.sep.join(parts) + json.dumps(NAMES)


def step():
    return helper(1), Joiner().join([]), (lambda: helper(2))()
'''


def load(source: str, path: Path) -> dict[str, object]:
    """Run `source` as if it were the file `path` (its code is then user code, compiled from that file)."""
    namespace: dict[str, object] = {"__name__": "nwpy_" + path.stem}
    exec(compile(source, str(path), "exec"), namespace)  # noqa: S102 - the test's own source
    return namespace


def uses_of(source: str, path: Path) -> dict[str, str]:
    return pycode.uses([load(source, path)["step"]])[0]


def test_helpers_classes_and_values_are_found_and_follow_edits(tmp_path: Path) -> None:
    base = uses_of(SOURCE, tmp_path / "m.py")
    assert sorted(base) == ["nwpy_m.Joiner", "nwpy_m.LIMIT", "nwpy_m.NAMES", "nwpy_m.helper"]
    laid_out = SOURCE.replace("# a comment", "# another comment\n\n").replace("\ndef step", "\n\n\n# moved\ndef step")
    assert uses_of(laid_out, tmp_path / "m.py") == base  # comments and line numbers change nothing
    for old, new in [("LIMIT = 3", "LIMIT = 4"), ('"gamma"', '"delta"'), ('sep = "+"', 'sep = "|"'),
                     ('"b": None', '"b": 0'), ("+ json.dumps", "- json.dumps"), ("scale=2", "scale=3")]:
        changed = uses_of(SOURCE.replace(old, new), tmp_path / "m.py")
        assert changed != base, (old, new)
        assert changed.keys() == base.keys()


def test_installed_code_and_other_objects_are_not_followed(tmp_path: Path) -> None:
    namespace = load("import json, threading\nLOCK = threading.Lock()\nBIG = list(range(100000))\n"
                     "def step():\n    return json.dumps(1), LOCK, BIG, os_path\n", tmp_path / "n.py")
    namespace["os_path"] = os.path  # a module of the standard library, named through a global
    assert pycode.uses([namespace["step"]]) == ({}, ())


def test_digests_are_the_same_in_every_process(tmp_path: Path) -> None:
    """A frozenset constant's order follows string hashing, which differs per process: it must not show."""
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        from nixlib import pycode
        ns = {{"__name__": "nwpy_p"}}
        exec(compile({SOURCE!r}, {str(tmp_path / "p.py")!r}, "exec"), ns)
        print(sorted(pycode.uses([ns["step"]])[0].items()))
    """)
    outputs = {subprocess.run([sys.executable, "-c", script], env=dict(os.environ, PYTHONHASHSEED=str(seed)),
                              capture_output=True, text=True, check=True).stdout for seed in (1, 2, 3, 4)}
    assert len(outputs) == 1


def test_code_digest_ignores_position_and_sees_nested_code() -> None:
    first = compile("def f():\n    return [x for x in (1, 2)]\n", "/a.py", "exec")
    moved = compile("\n\n\ndef f():\n    return [x for x in (1, 2)]\n", "/b.py", "exec")
    edited = compile("def f():\n    return [x for x in (1, 3)]\n", "/a.py", "exec")
    inner = [c for c in first.co_consts if isinstance(c, types.CodeType)][0]
    assert pycode.code_digest(first) == pycode.code_digest(moved)
    assert pycode.code_digest(first) != pycode.code_digest(edited)
    assert pycode.code_digest(inner) != pycode.code_digest(first)
