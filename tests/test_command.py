"""Tests for nixlib.command: examples for every rule, and properties over generated commands."""

from __future__ import annotations

import random
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nixlib.command import CommandSyntaxError, Token, is_normalised, normalise, shell_form, tokenize
from tests.helpers import nw

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SHELL = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- examples -------------------------------------------------------------------------------------

SAME = [
    ("train --lr=0.1 --epochs=5", "train --epochs=5 --lr=0.1"),
    ("train   --data=x\n   --epochs=5", "train --epochs=5 --data=x"),
    ("ls -la", "ls -al"),
    ("cmd -v -x -q", "cmd -q -x -v"),
    ("cmd -v -x -q file", "cmd -x -v -q file"),
    ("train --verbose --lr=1", "train --lr=1 --verbose"),
    ("a --y=1 --x=2 && b --x=1", "a --x=2 --y=1 &&\n  b --x=1"),
    ("a \\\n  --z=1 \\\n  --y=2", "a --y=2 --z=1"),
    ("cmd --z=$(echo a) --a=\"b c\"", "cmd --a=\"b c\" --z=$(echo a)"),
    ("cmd --b=${x} --a='q r'", "cmd --a='q r' --b=${x}"),
    ("cmd >out", "cmd > out"),
    ("cmd 2>&1", "cmd   2>&1"),
    ("a;b", "a ;  b"),
    ("a;\nb", "a; b"),
    ("a\n\n\nb\n", "\n\na\nb"),
    ("a # comment\n  # another\n--x=1", "a --x=1"),
    ("train --data=x\n\n  --epochs=5", "train --epochs=5 --data=x"),
]


@pytest.mark.parametrize(("left", "right"), SAME)
def test_equivalent_commands_share_one_form(left: str, right: str) -> None:
    assert normalise(left) == normalise(right)


DIFFERENT = [
    ("train --lr=0.001", "train --lr=1e-3"),  # numbers are not reformatted
    ("train a b", "train b a"),  # operands keep their order
    ("cmd --x=1 --x=2", "cmd --x=2 --x=1"),  # values of a repeated key keep their order
    ("cmd --flag value --b=1", "cmd --b=1 --flag value"),
    ("cmd --b=1 >out --a=1", "cmd --a=1 >out --b=1"),
    ("cmd -- --b=1 --a=1", "cmd -- --a=1 --b=1"),
    ("a --y=1 && b --x=1", "a --x=1 && b --y=1"),
    ("echo --b=1 --a=1", "echo --a=1 --b=1"),  # echo prints its arguments in order
    ("find . -empty -delete", "find . -delete -empty"),
    ("for x in --b --a; do :; done", "for x in --a --b; do :; done"),
    ("cmd a\nb", "cmd a b"),  # a line not starting with an option is a new command
    ("cmd 'a  b'", "cmd 'a b'"),
    ("cmd -abc --x=1 --b=1", "cmd --b=1 -abc --x=1"),  # bundles never move
]


@pytest.mark.parametrize(("left", "right"), DIFFERENT)
def test_different_commands_stay_different(left: str, right: str) -> None:
    assert normalise(left) != normalise(right)


CANONICAL = {
    "train --lr=0.1 --epochs=5": "train --epochs=5 --lr=0.1",
    "tar -xzf a.tgz": "tar -xzf a.tgz",  # f may take a.tgz: the bundle stays as written
    "ls -la": "ls -al",
    "ls -vvla": "ls -alvv",
    "cmd --flag value --b=1": "cmd --flag value --b=1",
    "cmd --c=1 --flag value --b=1 --a=2": "cmd --c=1 --flag value --a=2 --b=1",
    "cmd --b=1 --a=2 > out.txt --d=1 --c=1": "cmd --a=2 --b=1 >out.txt --c=1 --d=1",
    "cmd --b=1 -- --z=1 --a=1": "cmd --b=1 -- --z=1 --a=1",
    "cmd --c=1 --b=1 -- -xv --z=1 --a=1": "cmd --b=1 --c=1 -- -xv --z=1 --a=1",
    "echo --b=1 -- --z=1 --a=1": "echo --b=1 -- --z=1 --a=1",
    "a --y=1 --x=1 && b --x=1 --w=1": "a --x=1 --y=1 && b --w=1 --x=1",
    "a --y=1 --x=1 | b --x=1 --w=1 ; c": "a --x=1 --y=1 | b --w=1 --x=1; c",
    "cmd --x=2 --a=1 --x=1": "cmd --a=1 --x=2 --x=1",
    "cmd --v --a=1 file": "cmd --v --a=1 file",  # sorted, --v would take file as its value
    "cmd --v --a=1 --b=2 file": "cmd --v --a=1 --b=2 file",
    "cmd --b=2 --a=1 --v": "cmd --a=1 --b=2 --v",
    "cmd --offset -5 --b=1": "cmd --offset -5 --b=1",  # -5 is a value, not an option
    "cmd -name=x --b=1 --a=1": "cmd -name=x --a=1 --b=1",  # single-dash long option stays put
    "cmd --$k=1 --a=2": "cmd --$k=1 --a=2",  # a key hidden in an expansion never moves
    "cmd \"--b=1\" --a=2": "cmd --a=2 \"--b=1\"",  # decided on the value, emitted as written
    "cmd --b='x y' --a=\"$(date +%s)\"": "cmd --a=\"$(date +%s)\" --b='x y'",
    "A=1 B=2 cmd --b=1 --a=1": "A=1 B=2 cmd --a=1 --b=1",
    "python -u -m m --b=1 --a=2": "python -u -m m --a=2 --b=1",
    "if cmd --b=1 --a=1; then echo --y --x; fi": "if cmd --a=1 --b=1; then echo --y --x; fi",
    "go test --race --count=1": "go test --count=1 --race",
    "[ -f a -o -d b ]": "[ -f a -o -d b ]",
    "xargs echo --b --a": "xargs echo --b --a",
}


@pytest.mark.parametrize(("command", "expected"), sorted(CANONICAL.items()))
def test_canonical_form(command: str, expected: str) -> None:
    assert normalise(command) == expected
    assert is_normalised(expected)


SEED_STEPS = {
    "${build_data_bin}/bin/build-data --name=demo --samples=500 --seed=42\n":
        "${build_data_bin}/bin/build-data --name=demo --samples=500 --seed=42",
    "${train_bin}/bin/train\n--data=${dataset}/data.csv\n--epochs=5 --lr=0.01 --batch-size=128\n":
        "${train_bin}/bin/train --batch-size=128 --data=${dataset}/data.csv --epochs=5 --lr=0.01",
    "${compare_bin}/bin/compare\n--result=${eval_small}\n--result=${eval_base}\n--result=${eval_large}\n":
        "${compare_bin}/bin/compare --result=${eval_small} --result=${eval_base} --result=${eval_large}",
    "/nix/store/aaaa-inference/bin/inference\n  --model=/nix-workflow/store/bbbb-model/model.json\n"
    "  --data=/nix-workflow/store/cccc-dataset/data.csv\n":
        "/nix/store/aaaa-inference/bin/inference --data=/nix-workflow/store/cccc-dataset/data.csv"
        " --model=/nix-workflow/store/bbbb-model/model.json",
}


@pytest.mark.parametrize(("step", "expected"), sorted(SEED_STEPS.items()))
def test_seed_multi_line_steps(step: str, expected: str) -> None:
    assert normalise(step) == expected
    one_line = " ".join(step.split())
    assert normalise(one_line) == expected


def test_seed_style_reordered_and_reindented_is_the_same_step() -> None:
    written = "${train_bin}/bin/train\n--data=${dataset}/data.csv\n--epochs=10 --lr=0.001 --batch-size=32\n"
    rewritten = "  ${train_bin}/bin/train --lr=0.001\n   --batch-size=32\n   --epochs=10\n   --data=${dataset}/data.csv"
    assert normalise(written) == normalise(rewritten)


VERBATIM = [
    "diff <(sort a) <(sort b) >out 2>&1",
    "cat < <(ls)",
    "echo 'a b' \"c $(echo \")\") d\" ${x:-{a}} `ls` $'x\\'y'",
    "arr=(1 2 3); (( i++ )); [[ $x =~ ^(a|b)$ && -f y ]]; echo ok",
    "ls !(foo|bar) @(x) *(y)",
    "exec {fd}>file",
    "x 2 >y",
    "x $(( 1 << 2 )) --b=1",
    "cmd $(a --b=1 --a=1)",
    "f ( ) { echo hi; }",
    "echo \"multi\nline\" 'and\nthis'",
]


@pytest.mark.parametrize("command", VERBATIM)
def test_already_canonical_commands_are_unchanged(command: str) -> None:
    assert normalise(command) == command


def test_heredoc_rest_is_verbatim_without_trailing_blank_lines() -> None:
    cmd = "cat  --b=1 --a=1 <<EOF > out\n  keep   this  \n--z=1 --y=1\nEOF\n\n  \n"
    assert normalise(cmd) == "cat --a=1 --b=1 <<EOF > out\n  keep   this  \n--z=1 --y=1\nEOF"
    assert is_normalised(normalise(cmd))


def test_whitespace_and_continuations_fold() -> None:
    assert normalise("  a\t\tb  \\\n   c  ") == "a b c"
    assert normalise("ec\\\nho x") == "echo x"
    assert normalise('"a\\\nb"') == '"ab"'
    assert normalise("'a\\\nb'") == "'a\\\nb'"  # single quotes keep everything


def test_backslash_ending_the_input_stays_literal_when_moved() -> None:
    assert normalise("cmd --b=1 --a=x\\") == "cmd --a=x\\\\ --b=1"


def test_line_breaks_the_shell_ignores_vanish() -> None:
    assert normalise("a &&\n b ||\n c |\n d") == "a && b || c | d"
    assert normalise("(\n a\n b\n)") == "( a\nb\n)"
    assert normalise("a &\nb") == "a & b"


def test_comments_are_dropped_but_hash_inside_words_is_kept() -> None:
    assert normalise("a b#c '#d' # gone\nnext") == "a b#c '#d'\nnext"
    assert normalise("echo $# ${#x}") == "echo $# ${#x}"


def test_shell_form_joins_lines_but_moves_nothing() -> None:
    assert shell_form("train\n  --lr=1\n  --data=x # why\nls -la\n") == "train --lr=1 --data=x\nls -la"


# --- tokens ---------------------------------------------------------------------------------------


def test_token_kinds_and_values() -> None:
    toks = tokenize("cmd 'a b' \"c\\\"d\" 2>&1 --x=$(e f) |& y >> 'l g'; z && w\nv")
    assert [(t.text, t.kind) for t in toks] == [
        ("cmd", "word"), ("'a b'", "word"), ('"c\\"d"', "word"), ("2>&1", "redirect"),
        ("--x=$(e f)", "word"), ("|&", "operator"), ("y", "word"), (">>'l g'", "redirect"),
        (";", "operator"), ("z", "word"), ("&&", "operator"), ("w", "word"), ("\n", "operator"), ("v", "word"),
    ]
    assert [t.value for t in toks[:3]] == ["cmd", "a b", 'c"d']
    assert toks[7].value == ">>l g"


def test_tokens_are_small_frozen_values() -> None:
    tok = tokenize("  x")[0]
    assert tok == Token("x", "x", "word") and tok.pos == 2
    with pytest.raises(AttributeError):
        tok.text = "y"  # type: ignore[misc]


@pytest.mark.parametrize("op", [";", "&", "&&", "||", "|", "|&", "(", ")", ";;"])
def test_operators(op: str) -> None:
    assert [t.kind for t in tokenize(f"a {op} b")] == ["word", "operator", "word"]


@pytest.mark.parametrize("redir", [">", ">>", "<", "<&", ">&", "&>", "&>>", "2>", "<<<", "<>", ">|", "10>"])
def test_redirections_take_their_target(redir: str) -> None:
    for gap in ("", " "):
        toks = tokenize(f"a {redir}{gap}t b")
        assert [(t.kind, t.text) for t in toks] == [("word", "a"), ("redirect", f"{redir}t"), ("word", "b")]


def test_ansi_c_quote_value_is_decoded() -> None:
    assert tokenize("$'a\\nb\\'c'")[0].value == "a\nb'c"


# --- errors ---------------------------------------------------------------------------------------


def test_error_message_names_line_column_and_offset() -> None:
    cmd = "train\n--data=x\n  \"--y=2 --z=3\n"
    with pytest.raises(CommandSyntaxError) as info:
        normalise(cmd)
    err = info.value
    assert isinstance(err, ValueError)
    assert (err.position, err.line, err.column) == (17, 3, 3)
    assert str(err) == "unterminated double quote starting at line 3, column 3 (offset 17)"


@pytest.mark.parametrize(
    ("cmd", "position", "what"),
    [
        ("echo 'abc", 5, "single quote"),
        ('echo "a $(b)', 5, "double quote"),
        ("echo $(a 'b' c", 5, "command substitution"),
        ("echo $(a 'b c", 9, "single quote"),
        ("echo `ls", 5, "backquote"),
        ("echo ${a", 5, "parameter expansion"),
        ("echo $'a\\'", 5, "$'...' quote"),
        ("diff <(a", 5, "process substitution"),
        ("((a", 0, "arithmetic"),
        ("cmd >", 4, "redirection without a target"),
        ("cmd 2> ;", 4, "redirection without a target"),
    ],
)
def test_unterminated_constructs(cmd: str, position: int, what: str) -> None:
    with pytest.raises(CommandSyntaxError, match=re.escape(what)) as info:
        tokenize(cmd)
    assert info.value.position == position


def test_absurd_nesting_is_a_syntax_error_not_a_crash() -> None:
    with pytest.raises(CommandSyntaxError, match="nested too deeply"):
        tokenize("$(" * 3000 + ")" * 3000)


# --- generated commands ---------------------------------------------------------------------------

KEYS = st.sampled_from(["a", "b", "lr", "epochs", "data", "batch-size", "x.y", "n_1", "Z"])
_SPECIAL = {"echo", "printf", "find", "expr", "test", "for", "case", "select"}
PLAIN = st.from_regex(r"[a-z0-9][a-z0-9._/]{0,5}", fullmatch=True).filter(
    lambda s: s.rsplit("/", 1)[-1] not in _SPECIAL
)
PORTABLE_QUOTED = st.one_of(
    PLAIN.map(lambda s: f"'{s} x'"),
    st.from_regex(r"[a-z #;&|<>()]{0,6}", fullmatch=True).map(lambda s: f'"{s}"'),
    st.sampled_from(['"a \\" b"', '"$x"', '"a $x b"', '"$(echo "p q")"', "${x:-a b}", "`echo q`", "a\\ b", "$x"]),
    st.just("'a'\"b\"c"),
)
QUOTED = st.one_of(PORTABLE_QUOTED, st.sampled_from(["$'a\\'b'", "$(echo ')')", "<(ls)"]))
VALUE = st.one_of(PLAIN, QUOTED)
KV = st.builds(lambda k, v: f"--{k}={v}", KEYS, VALUE)
FLAG = KEYS.map(lambda k: f"--{k}")
SHORT = st.sampled_from("abcxyzqA").map(lambda c: "-" + c)
BUNDLE = st.from_regex(r"-[a-zA-Z]{2,4}", fullmatch=True)
REDIRECT = st.sampled_from([">out", "2>&1", "< in", ">> 'log file'", "2>/dev/null", "&> all"])
WORD = st.one_of(PLAIN, VALUE, KV, KV, FLAG, SHORT, BUNDLE, st.sampled_from(["--", "-5", "-"]), REDIRECT)
SEP = st.sampled_from([" ", "  ", "\t", " \\\n  ", "\n  ", " # note\n  "])
PROGRAM = st.one_of(PLAIN, st.sampled_from(["${train}/bin/train", "/nix/store/x-t/bin/t", "echo", "A=1 prog"]))
ARG = st.builds(str.__add__, SEP, WORD)
OPERATOR = st.sampled_from([" && ", " || ", "; ", " | ", "\n", " &\n", "\n\n", " ;\n"])


@st.composite
def simple_commands(
    draw: st.DrawFn, args: st.SearchStrategy[str] = ARG, program: str | None = None
) -> str:
    """A program and up to seven arguments, each drawn with the blanks or line break before it."""
    parts = [program or draw(PROGRAM)]
    parts += draw(st.lists(args, max_size=7))
    return "".join(parts)


@st.composite
def scripts(draw: st.DrawFn, cmd: st.SearchStrategy[str] | None = None, ops: st.SearchStrategy[str] = OPERATOR) -> str:
    cmd = simple_commands() if cmd is None else cmd
    text = draw(cmd)
    for _ in range(draw(st.integers(0, 3))):
        nxt = draw(cmd)
        text += draw(ops) + (f"( {nxt} )" if draw(st.booleans()) else nxt)
    return draw(st.sampled_from(["", "\n", "  "])) + text + draw(st.sampled_from(["", "\n", "\n\n", "\n: x\\"]))


def _segments(tokens: list[Token]) -> list[list[Token]]:
    out: list[list[Token]] = [[]]
    for tok in tokens:
        if tok.kind == "operator":
            out.append([])
        else:
            out[-1].append(tok)
    return [seg for seg in out if seg]


def _word_bag(seg: list[Token]) -> Counter[str]:
    """Words of a simple command, bundles with sorted letters: what normalise may only permute."""
    def canon(t: Token) -> str:
        if t.kind == "word" and len(t.text) > 2 and t.text[0] == "-" and t.text[1:].isalpha() and t.text.isascii():
            return "-" + "".join(sorted(t.text[1:]))
        return t.text
    return Counter(canon(t) for t in seg)


@FAST
@given(scripts())
def test_normalise_is_idempotent(cmd: str) -> None:
    once = normalise(cmd)
    assert normalise(once) == once
    assert is_normalised(once)


@FAST
@given(scripts())
def test_normalise_only_permutes_words_within_each_simple_command(cmd: str) -> None:
    before = [_word_bag(seg) for seg in _segments(tokenize(cmd))]
    after = [_word_bag(seg) for seg in _segments(tokenize(normalise(cmd)))]
    assert before == after
    ops = [t.text for t in tokenize(cmd) if t.kind == "operator"]
    assert ops == [t.text for t in tokenize(normalise(cmd)) if t.kind == "operator"]


@FAST
@given(
    st.lists(st.tuples(KEYS, VALUE), min_size=1, max_size=8, unique_by=lambda kv: kv[0]),
    st.randoms(use_true_random=False),
    st.sampled_from(["", " file", " > out", " && next", " -- --b=1 --a=1", " -x"]),
)
def test_permuting_distinct_keys_never_changes_the_result(
    opts: list[tuple[str, str]], rnd: random.Random, tail: str
) -> None:
    words = [f"--{k}={v}" for k, v in opts]
    shuffled = words[:]
    rnd.shuffle(shuffled)
    expected = normalise("prog sub " + " ".join(sorted(words, key=lambda w: w[2:].split("=")[0])) + tail)
    assert normalise("prog sub " + " ".join(shuffled) + tail) == expected
    assert normalise("prog sub\n  " + "\n  ".join(shuffled) + tail) == expected


def _key(word: str) -> str:
    return word.lstrip("-").split("=", 1)[0]


def _run_before_operand(run: list[str]) -> list[str]:
    """A run followed by an operand: a trailing bare flag keeps it, and the rest sorts unless that
    would leave a bare flag in front of the operand."""
    if run and "=" not in run[-1]:
        return sorted(run[:-1], key=_key) + run[-1:]
    ordered = sorted(run, key=_key)
    return ordered if not ordered or "=" in ordered[-1] else run


RUN_WORD = st.one_of(KV, KV, FLAG, SHORT)


@FAST
@given(
    st.lists(RUN_WORD, max_size=4),
    st.lists(RUN_WORD, max_size=4),
    st.lists(KV, max_size=4),
    st.lists(RUN_WORD, max_size=4),
    st.lists(WORD, max_size=4),
    st.sampled_from(["--flag value", "-o 'out file'", "--name \"$x\"", "-n 5"]),
    REDIRECT,
)
def test_runs_never_cross_flag_values_redirections_or_double_dash(
    a: list[str], b: list[str], c: list[str], d: list[str], rest: list[str], flag_value: str, redirect: str
) -> None:
    cmd = " ".join(["prog", *a, flag_value, *b, "operand", *c, redirect, *d, "--", *rest])
    expected = [
        "prog", *sorted(a, key=_key), flag_value, *_run_before_operand(b), "operand",
        *sorted(c, key=_key), redirect, *sorted(d, key=_key), "--", *rest,
    ]
    assert normalise(cmd) == shell_form(" ".join(expected))


@FAST
@given(st.lists(simple_commands(), min_size=2, max_size=4), st.lists(OPERATOR, min_size=3, max_size=3))
def test_commands_joined_by_operators_normalise_separately(cmds: list[str], ops: list[str]) -> None:
    joined = cmds[0] + "".join(op + cmd for op, cmd in zip(ops, cmds[1:], strict=False))
    separately = [w for cmd in cmds for w in _flat_words(normalise(cmd))]
    assert _flat_words(normalise(joined)) == separately


def _flat_words(cmd: str) -> list[str]:
    return [t.text for t in tokenize(cmd) if t.kind != "operator"]


OPENERS = st.sampled_from(["'", '"', "$(", "`", "${", "$'", "<("])


@FAST
@given(scripts(simple_commands(st.builds(str.__add__, st.sampled_from([" ", "\t", " \\\n ", "\n  "]), WORD))), OPENERS,
       st.from_regex(r"[a-z ]{0,8}", fullmatch=True))
def test_unterminated_construct_reports_its_position(prefix: str, opener: str, body: str) -> None:
    cmd = prefix + " " + opener + body
    position = len(prefix) + 1
    with pytest.raises(CommandSyntaxError) as info:
        normalise(cmd)
    err = info.value
    assert err.position == position
    assert err.line == cmd.count("\n", 0, position) + 1
    assert f"(offset {position})" in str(err)


# --- semantics under a real shell -----------------------------------------------------------------

SH = shutil.which("sh")
MARK = "@@"
PRELUDE = f"x='p q'; show() {{ printf '%s\\0' {MARK} \"$@\"; }}\n"
SH_WORD = st.one_of(
    PLAIN, PORTABLE_QUOTED, st.builds(lambda k, v: f"--{k}={v}", KEYS, st.one_of(PLAIN, PORTABLE_QUOTED)),
    FLAG, SHORT, st.sampled_from(["--", "-5", "-"]),
)
SH_OPTION = st.one_of(st.builds(lambda k, v: f"--{k}={v}", KEYS, st.one_of(PLAIN, PORTABLE_QUOTED)), FLAG, SHORT)
SH_ARG = st.builds(str.__add__, st.sampled_from([" ", "\t", " \\\n  "]), SH_WORD)
SH_OPTION_LINE = st.builds(str.__add__, st.just("\n  "), SH_OPTION)
SH_OPS = st.sampled_from([" && ", "; ", "\n", " ;\n", "  # c\n"])


def _argv_per_command(script: str) -> list[list[str]]:
    out = subprocess.run([SH, "-c", PRELUDE + script], capture_output=True, check=True).stdout.decode()
    chunks: list[list[str]] = []
    for arg in out.split("\0")[:-1]:
        if arg == MARK:
            chunks.append([])
        else:
            chunks[-1].append(arg)
    return chunks


@pytest.mark.skipif(SH is None, reason="needs a POSIX sh")
@SHELL
@given(scripts(simple_commands(SH_ARG, "show"), SH_OPS))
def test_shell_form_runs_exactly_like_the_original(cmd: str) -> None:
    assert _argv_per_command(shell_form(cmd)) == _argv_per_command(cmd)


@pytest.mark.skipif(SH is None, reason="needs a POSIX sh")
@SHELL
@given(scripts(simple_commands(st.one_of(SH_ARG, SH_OPTION_LINE), "show"), SH_OPS))
def test_normalise_gives_each_command_the_same_arguments(cmd: str) -> None:
    before = _argv_per_command(shell_form(cmd))
    after = _argv_per_command(normalise(cmd))
    assert [Counter(args) for args in before] == [Counter(args) for args in after]


# --- long commands (issue 8 item 7): linear normalisation, refused before they could hit E2BIG ---------


def test_a_100k_heredoc_with_blank_lines_normalises() -> None:
    """The trailing-blank-lines regex backtracked quadratically: 48 KB of blank lines took 89 s."""
    body = "\n \n" * 34_000 + "x\n\t\n"
    cmd = "cat <<EOF > $out/f\n" + body + "EOF\n \n\n"
    assert len(cmd) > 100_000
    assert normalise(cmd) == cmd.rstrip(" \n")
    assert shell_form(cmd) == cmd.rstrip(" \n")


@given(st.text(alphabet=" \t\nab", max_size=30))
def test_heredoc_tail_is_trimmed_as_the_regex_said(text: str) -> None:
    from nixlib.command import _drop_trailing_blank_lines

    assert _drop_trailing_blank_lines(text) == re.sub(r"(\n[ \t]*)+\Z", "", text)


def test_a_command_too_long_for_one_argument_is_refused_naming_the_step() -> None:
    from nixlib.command import MAX_COMMAND_BYTES, CommandTooLong
    from nixlib.recipe import Recipe

    Recipe(name="fits", command="echo " + "x" * (MAX_COMMAND_BYTES - 5))
    with pytest.raises(CommandTooLong, match=r"step 'big': its command is 200,005 bytes .* Put the script in a file"):
        Recipe(name="big", command="echo " + "x" * 200_000)


def test_nw_run_refuses_a_200k_command_up_front(tmp_path: Path) -> None:
    exp = tmp_path / "exp.py"
    exp.write_text("from nixlib import output\nbig = output('echo ' + 'x' * 200_000 + ' > $out/f')\n")
    run = nw("run", str(exp))
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert re.search(r"step 'big' \(\S*exp\.py:2\): its command is 200,01\d bytes long", run.stderr)
    assert "Put the script in a file" in run.stderr
    assert "E2BIG" not in run.stderr and "Argument list too long" not in run.stderr
