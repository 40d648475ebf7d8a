"""The shortcuts a cached check takes for the common case must answer exactly as the general way does.

Each shortcut (a one-regex test that a command names no path outside the store, that a step name has no
control character) is checked against the general way on inputs made of the characters that matter to it:
separators, quotes, `$`, parentheses, backslashes and pieces of the store's own path.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from nixlib import codefiles
from nixlib.names import name_problem

ROOTS = ["/tmp/s/store", "/srv/nw", "/a b/store", "/x=y/st:ore", "/tmp/it's"]
PIECES = ["/", " ", ";", "|", "&", "<", ">", "(", ")", "'", '"', "`", "=", ",", ":", "$", "\\", "((", "))", "$out",
          "$output", "${out}", "$HOME", "out", "a", "-", ".", "\n", "\t", "x.py", "$((", "{", "}"]


def commands(roots: list[str]) -> st.SearchStrategy[str]:
    pieces = PIECES + roots + [r + "/" for r in roots] + [r + "/placeholders/abc-Data" for r in roots]
    return st.lists(st.sampled_from(pieces), max_size=14).map("".join)


@settings(max_examples=1500, deadline=None)
@given(commands(ROOTS), st.sampled_from(ROOTS))
def test_command_paths_shortcut_answers_as_the_word_by_word_way(text: str, root: str) -> None:
    assert codefiles.command_paths(text, root) == codefiles._paths_by_words(text, root + "/")


def test_the_shortcuts_are_taken_in_the_common_case() -> None:
    """(Else the differential test above compares the general way with itself.)"""
    text = "cat /tmp/s/store/placeholders/abc-Data/data > $out/work"
    assert codefiles._only_store_paths(text, "/tmp/s/store/")
    assert codefiles.command_paths("python /home/me/train.py $out", "/tmp/s/store") == ["/home/me/train.py"]


@given(st.text(max_size=20))
def test_step_names_with_control_characters_are_refused(name: str) -> None:
    control = any(ord(c) < 32 or ord(c) == 127 for c in name)  # (the check as it was written before the regex)
    problem = name_problem(name)
    if control:
        assert problem is not None
    elif problem is not None:
        assert "control character" not in problem
