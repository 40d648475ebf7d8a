"""nixlib.nixpaths, the lexer that finds the path literals of a Nix file for the evaluation cache, fuzzed: it never
fails on any text, and on generated expressions it finds exactly the paths real Nix's parser finds
(`nix-instantiate --parse` prints each path literal resolved, outside quotes), none inside strings or comments."""

from __future__ import annotations

import os
import re
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nixlib.nixpaths import literal_paths, literals
from tests.nixcheck import require_nix

NIX_CHARS = st.text(alphabet="\"'${}/#*.\n ab~<>:\\;=()[]-_+09", max_size=200)


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(NIX_CHARS, st.text(max_size=200)))
def test_the_lexer_never_fails_and_finds_only_path_like_words(text: str) -> None:
    for found in literals(text):
        assert isinstance(found, str) and "/" in found and found in text


SEGMENT = st.from_regex(r"[a-z][a-z0-9_.+-]{0,6}", fullmatch=True).filter(lambda s: not s.endswith("."))
PATH = st.builds(lambda up, segs: ("../" if up else "./") + "/".join(segs), st.booleans(),
                 st.lists(SEGMENT, min_size=1, max_size=3))


def _decoy(path: str, kind: int) -> str:
    """`path` where Nix reads no path: in a string, an indented string, a comment."""
    return [f'"{path}"', f"'' {path} ''", f"# {path}\n", f"/* {path} */", f'"a ${{"{path}"}} b"'][kind]


ITEM = st.one_of(st.tuples(st.just("path"), PATH),
                 st.tuples(st.integers(0, 4), PATH),
                 st.tuples(st.just("word"), SEGMENT.filter(lambda s: re.fullmatch(r"[a-z][a-z0-9_]*", s) is not None)))


@pytest.mark.nix
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=st.lists(ITEM, max_size=8))
def test_generated_expressions_give_the_paths_real_nix_parses(items: list[tuple[object, str]], tmp_path_factory:
                                                               pytest.TempPathFactory) -> None:
    nix = require_nix("nix-instantiate")
    parts, expected = [], []
    for kind, value in items:
        if kind == "path":
            parts.append(value)
            expected.append(value)
        elif kind == "word":
            parts.append(f'"{value}"')
        else:
            parts.append(_decoy(value, int(kind)))
    text = "[\n" + " ".join(parts) + "\n]\n"
    d = tmp_path_factory.mktemp("nix")
    file = d / "e.nix"
    file.write_text(text)
    parsed = subprocess.run([nix, "--parse", str(file)], capture_output=True, text=True, check=True).stdout
    real = [os.path.normpath(p) for p in re.findall(r'(?:^|[\s\[(])(/[^\s\])"]*)', re.sub(r'"(?:[^"\\]|\\.)*"', '""',
                                                                                          parsed))]
    assert literals(text) == expected
    assert sorted(literal_paths(str(file))) == sorted(set(real)), (text, parsed)
