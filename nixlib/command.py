"""Shell-aware tokenizer and canonical form of step commands (DESIGN §9).

A recipe key must not change because a command was re-indented, wrapped over lines or had its
``--key=value`` options listed in another order, yet it must change whenever the shell (or a
getopt-style program) could see a different command. So every rule below either only folds what the
shell itself ignores, or only permutes whole words where the usual option conventions make the order
irrelevant; when in doubt a word stays where it is.

Lines. Step commands are written in Nix and Python strings as one command over several lines
*without* backslashes (``train\\n  --data=x\\n  --epochs=5``), so a line whose first word begins with
an unquoted ``-`` continues the previous command. Any other line break between commands is a
separator and is rendered as ``\\n``; line breaks the shell ignores anyway (after ``&&``, ``||``,
``|``, ``;``, ``&``, ``(``, ``;;``), blank lines, leading and trailing line breaks and comments vanish;
backslash-newline continuations fold away. Because of the first rule the canonical form of such a
command is not what ``sh -c`` would make of the original: run :func:`shell_form`, which joins the
lines the same way but reorders nothing.

Options. Within one simple command (words between operators) the program and operands keep their
order. A maximal run of consecutive movable options is sorted stably by key (the values of a repeated
key keep their order). Movable are ``--key=value`` (key made only of ``[A-Za-z0-9_.-]``, so no
expansion can hide a key), and ``--flag`` or ``-x`` when the next word is another option or the
command ends: a flag followed by an operand or a redirection may take it as its value, so it stays in
place with it, and a run is left as written if sorting would put such a flag in front of an operand.
Options whose keys differ but whose order is meaning keep their relative order: filter rules
(``--include=``, ``--exclude=``, ``--filter=`` and their ``-from``/``-dir`` forms: rsync, grep and ``aws s3
sync`` apply the first or last matching one) and a flag with its negation (``--x`` and ``--no-x``,
``--with-x``/``--without-x``, ``--enable-x``/``--disable-x``: the last one wins) sort together under the
first such key. Redirections, operators and a ``--`` word split runs; everything after ``--`` is verbatim. A bundle of
several short flags (``-la``) has its letters sorted when the next word is an option or the end, but
it never moves: single-dash long options (``find -empty -delete``, ``convert -flip -flop``) are
order-sensitive and look exactly like bundles. Commands that print or evaluate their arguments as data
(``echo``, ``printf``, ``find``, ``expr`` anywhere in the command; ``test``, ``[``, ``[[``, ``for``,
``case``, ``select`` as the command word) are left as written.

Words. Quoting is kept exactly: decisions use a word's unquoted value, output uses its source text.
Numbers are not reformatted (``--lr=0.001`` and ``--lr=1e-3`` are different keys' values to us).
``$(...)``, backticks, ``${...}``, ``$'...'``, ``<(...)``, ``((...))``, array assignments and extended
globs stay inside their word verbatim. Everything from a here-document operator (``<<``, ``<<-``) to
the end of the string is kept verbatim (only trailing blank lines are dropped).

Known limits: a ``case`` pattern's unbalanced ``)`` or a here-document inside ``$(...)`` is not
understood by the parenthesis matcher; an unquoted ``--key=$var`` is moved as one word although word
splitting may turn it into several.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from nixlib.errors import NixWorkflowError

__all__ = ["CommandSyntaxError", "CommandTooLong", "MAX_COMMAND_BYTES", "Token", "check_length", "tokenize",
           "normalise", "is_normalised", "shell_form"]

Kind = Literal["word", "operator", "redirect"]


@dataclass(frozen=True)
class Token:
    """One shell token; ``text`` re-joined with blanks never changes meaning, ``value`` drives decisions."""

    text: str
    value: str
    kind: Kind
    pos: int = field(default=0, compare=False)


class CommandSyntaxError(ValueError):
    """A command the shell could not parse either; ``position`` is a 0-based offset into the input."""

    def __init__(self, what: str, source: str, position: int) -> None:
        self.position = position
        self.line = source.count("\n", 0, position) + 1
        self.column = position - (source.rfind("\n", 0, position) + 1) + 1
        super().__init__(f"{what} at line {self.line}, column {self.column} (offset {position})")


_BLANKS = " \t"
_OPERATOR_CHARS = ";&|()<>"
_CONTROL_OPERATORS = ("&&", "||", ";;&", ";;", ";&", "|&", ";", "&", "|", "(", ")")
_REDIRECT_OPERATORS = ("<<<", "<<-", "<<", "<>", "<&", "<", ">>", ">|", ">&", ">", "&>>", "&>")
_NEWLINE = "\n"
# After these the shell skips line breaks, so a line break carries no meaning.
_LINE_BREAK_IGNORED_AFTER = frozenset({"&&", "||", "|", "|&", "(", ";", "&", ";;", ";&", ";;&", _NEWLINE})
_ATTACHED = frozenset({";", ";;", ";&", ";;&"})
_COMMAND_PREFIX_WORDS = frozenset({"!", "{", "if", "then", "elif", "else", "while", "until", "do", "time"})
_EXTGLOB_CHARS = "?*+@!"
_ANSI_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "f": "\f", "v": "\v",
                 "e": "\x1b", "E": "\x1b", "\\": "\\", "'": "'", '"': '"', "?": "?"}

_FD_PREFIX = re.compile(r"\d+|\{[A-Za-z_][A-Za-z0-9_]*\}")
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\[[^]]*\])?\+?=")
_KEY = r"[A-Za-z0-9_][A-Za-z0-9_.-]*"
_LONG_KEY_VALUE = re.compile(rf"--({_KEY})=", re.DOTALL)
_LONG_FLAG = re.compile(rf"--({_KEY})")
_SHORT_FLAG = re.compile(r"-([A-Za-z])")
_BUNDLE = re.compile(r"-[A-Za-z]{2,}")
_OPTION_LIKE = re.compile(r"-[A-Za-z-]")
# Characters that are literal in a word wherever they stand: no blank, operator, quote, expansion or parenthesis.
_PLAIN_RUN = re.compile(r"[^ \t\n;&|()<>\\'\"$`]+")
# A whole word of such characters (not starting a comment), ended where no redirection, process substitution,
# extended glob or array assignment can continue it: a blank, a line break, the end, or ; & | )
_SIMPLE_WORD = re.compile(r"[^ \t\n;&|()<>\\'\"$`#][^ \t\n;&|()<>\\'\"$`]*(?=[ \t\n;&|)]|\Z)")

# Options with different keys whose relative order is meaning: filter rules, of which the first or the last that
# matches wins (`rsync`/`grep`/`aws s3 sync --include=*.txt --exclude=*`), and a flag and its negation, of which
# the last one wins (`--fast ... --no-fast`, `--with-x`/`--without-x`, `--enable-x`/`--disable-x`).
_FILTER_KEY = re.compile(r"(?:include|exclude|filter)(?:[-_.].*)?", re.IGNORECASE)
_NEGATED_KEY = re.compile(r"(?:no|with|without|enable|disable)[-_](.+)", re.IGNORECASE)

# Their arguments are data or an expression, whose order is meaning.
_DATA_PROGRAMS = frozenset({"echo", "printf", "find", "expr"})
_EXPRESSION_HEADS = frozenset({"test", "[", "[[", "for", "case", "select"})


class _Lexer:
    """Single pass over the source; offsets stay those of the original string for error messages."""

    def __init__(self, src: str) -> None:
        self.src = src
        self.pos = 0
        self.tokens: list[Token] = []
        self.in_test = False  # inside [[ ... ]], where < > ( ) | & are ordinary characters

    def error(self, what: str, position: int) -> CommandSyntaxError:
        return CommandSyntaxError(what, self.src, position)

    def peek(self, offset: int = 0) -> str:
        i = self.pos + offset
        return self.src[i] if i < len(self.src) else ""

    def run(self) -> list[Token]:
        while self.skip_blanks():
            self.step()
        return self.tokens

    def skip_blanks(self) -> bool:
        """Skip blanks and backslash-newlines; say whether input remains."""
        src = self.src
        while self.pos < len(src):
            if src[self.pos] in _BLANKS:
                self.pos += 1
            elif src.startswith("\\\n", self.pos):
                self.pos += 2
            else:
                return True
        return False

    def step(self) -> None:
        if not self.in_test:  # the common token: a word of ordinary characters, ended by a blank or an operator
            simple = _SIMPLE_WORD.match(self.src, self.pos)
            if simple is not None:
                self.pos = simple.end()
                self.emit(Token(simple.group(), simple.group(), "word", simple.start()))
                return
        c, start = self.peek(), self.pos
        if c == "#":
            end = self.src.find(_NEWLINE, start)
            self.pos = len(self.src) if end < 0 else end
        elif c == _NEWLINE:
            self.pos += 1
            self.emit(Token(_NEWLINE, _NEWLINE, "operator", start))
        elif self.in_test:
            self.test_word()
        elif self.at_redirect():
            self.redirect("", start)
        elif self.src.startswith("((", start):
            end = self.end_parens(start, start, "unterminated arithmetic command ((...)) starting")
            self.pos = end
            self.emit(Token(self.src[start:end], self.src[start:end], "word", start))
        elif c in _OPERATOR_CHARS and c not in "<>":  # a < or > left here opens a process substitution
            op = next(o for o in _CONTROL_OPERATORS if self.src.startswith(o, start))
            self.pos += len(op)
            self.emit(Token(op, op, "operator", start))
        else:
            self.plain_word()

    def emit(self, token: Token) -> None:
        if token.kind == "word" and token.text == "[[" and self.at_command_start():
            self.in_test = True
        self.tokens.append(token)

    def at_command_start(self) -> bool:
        if not self.tokens:
            return True
        last = self.tokens[-1]
        return last.kind == "operator" or (last.kind == "word" and last.text in _COMMAND_PREFIX_WORDS)

    def at_redirect(self) -> bool:
        c, nxt = self.peek(), self.peek(1)
        if c in "<>":
            return nxt != "("
        return c == "&" and nxt == ">"

    def plain_word(self) -> None:
        word = self.word()
        if self.peek() in ("<", ">") and self.peek(1) != "(" and _FD_PREFIX.fullmatch(word.text):
            self.redirect(word.text, word.pos)
        else:
            self.emit(word)

    def test_word(self) -> None:
        start = self.pos
        if self.src.startswith("]]", start) and self.src[start + 2 : start + 3] in ("", *" \t\n;&|)"):
            self.pos += 2
            self.in_test = False
            self.emit(Token("]]", "]]", "word", start))
        else:
            self.emit(self.word(literal_operators=True))

    def redirect(self, prefix: str, start: int) -> None:
        op = next(o for o in _REDIRECT_OPERATORS if self.src.startswith(o, self.pos))
        if op in ("<<", "<<-"):
            rest = _drop_trailing_blank_lines(self.src[start:])
            self.pos = len(self.src)
            self.emit(Token(rest, rest, "redirect", start))
            return
        self.pos += len(op)
        if not self.skip_blanks() or self.peek() in "#\n" or (
            self.peek() in _OPERATOR_CHARS and not (self.peek() in "<>" and self.peek(1) == "(")
        ):
            raise self.error("redirection without a target", start)
        target = self.word()
        gap = " " if target.text[:1] in "<>" else ""
        self.emit(Token(prefix + op + gap + target.text, prefix + op + target.value, "redirect", start))

    def word(self, literal_operators: bool = False) -> Token:
        """Lex one word; constructs with their own nesting are copied raw into text and value."""
        src, start = self.src, self.pos
        text: list[str] = []
        value: list[str] = []
        plain_last = ""  # last character if it was an unquoted literal (extglob detection)
        while self.pos < len(src):
            c, i = src[self.pos], self.pos
            if c in _BLANKS or c == _NEWLINE:
                break
            if c == "(" and ((plain_last and plain_last in _EXTGLOB_CHARS) or _ASSIGNMENT.fullmatch("".join(text))):
                end = self.end_parens(i, i, "unterminated parenthesised word part starting")
            elif c in "<>" and self.peek(1) == "(":
                end = self.end_parens(i + 1, i, "unterminated process substitution starting")
            elif c in _OPERATOR_CHARS and not literal_operators:
                break
            elif c in "\\'\"$`":
                self.quoted_part(text, value)
                plain_last = ""
                continue
            else:  # a run of ordinary characters at once (a character at a time made this the lexer's hot loop)
                run = _PLAIN_RUN.match(src, i)
                end = run.end() if run is not None else i + 1
                piece = src[i:end]
                text.append(piece)
                value.append(piece)
                plain_last = piece[-1]
                self.pos = end
                continue
            piece = src[i:end]
            text.append(piece)
            value.append(piece)
            plain_last = ""
            self.pos = end
        return Token("".join(text), "".join(value), "word", start)

    def quoted_part(self, text: list[str], value: list[str]) -> None:
        """Consume one backslash escape, quote or expansion, appending its text and unquoted value."""
        src, i = self.src, self.pos
        c, nxt = src[i], self.peek(1)
        if c == "\\":
            if nxt == _NEWLINE:
                self.pos = i + 2
                return
            end = min(i + 2, len(src))
            # A backslash ending the input is literal; escape it so that no moved word lands after it.
            text.append(src[i:end] if end == i + 2 else "\\\\")
            value.append(src[i + 1 : end] or "\\")
        elif c == "'":
            end = self.end_single(i)
            text.append(src[i:end])
            value.append(src[i + 1 : end - 1])
        elif c == '"' or (c == "$" and nxt == '"'):
            end = self.double_quoted(i, text, value)
        elif c == "$" and nxt == "'":
            end = self.end_ansi(i)
            text.append(src[i:end])
            value.append(_decode_ansi(src[i + 2 : end - 1]))
        else:
            end = self.end_backtick(i) if c == "`" else self.end_dollar(i, in_double_quotes=False)
            text.append(src[i:end])
            value.append(src[i:end])
        self.pos = end

    def double_quoted(self, start: int, text: list[str], value: list[str]) -> int:
        """Consume ``"..."`` or ``$"..."``, folding backslash-newlines; return the end offset."""
        src = self.src
        j = start + (2 if src[start] == "$" else 1)
        text.append(src[start:j])
        while j < len(src):
            c = src[j]
            if c == '"':
                text.append(c)
                return j + 1
            if c == "\\" and j + 1 < len(src):
                nxt = src[j + 1]
                if nxt != _NEWLINE:
                    text.append(c + nxt)
                    value.append(nxt if nxt in '$`"\\' else c + nxt)
                end = j + 2
            else:
                end = self.end_backtick(j) if c == "`" else self.end_dollar(j, True) if c == "$" else j + 1
                text.append(src[j:end])
                value.append(src[j:end])
            j = end
        raise self.error("unterminated double quote starting", start)

    # Raw scanners: return the offset just past a construct, whose text is kept verbatim.

    def end_single(self, start: int) -> int:
        end = self.src.find("'", start + 1)
        if end < 0:
            raise self.error("unterminated single quote starting", start)
        return end + 1

    def end_escaped(self, start: int, body: int, close: str, what: str) -> int:
        src, j = self.src, body
        while j < len(src):
            if src[j] == "\\":
                j += 2
            elif src[j] == close:
                return j + 1
            else:
                j += 1
        raise self.error(what, start)

    def end_ansi(self, start: int) -> int:
        return self.end_escaped(start, start + 2, "'", "unterminated $'...' quote starting")

    def end_backtick(self, start: int) -> int:
        return self.end_escaped(start, start + 1, "`", "unterminated backquote starting")

    def end_double(self, start: int) -> int:
        return self.double_quoted(start, [], [])

    def end_dollar(self, start: int, in_double_quotes: bool) -> int:
        nxt = self.src[start + 1 : start + 2]
        if nxt == "(":
            return self.end_parens(start + 1, start, "unterminated command substitution $(...) starting")
        if nxt == "{":
            return self.end_brace(start, in_double_quotes)
        if nxt == "'" and not in_double_quotes:
            return self.end_ansi(start)
        if nxt == '"' and not in_double_quotes:
            return self.end_double(start)
        return start + 1

    def end_nested(self, j: int, in_double_quotes: bool) -> int | None:
        """End of a quote or expansion starting at ``j`` inside a raw construct, or None."""
        c = self.src[j]
        if c == "\\":
            return j + 2
        if c == "'" and not in_double_quotes:
            return self.end_single(j)
        if c == '"':
            return self.end_double(j)
        if c == "`":
            return self.end_backtick(j)
        if c == "$":
            return self.end_dollar(j, in_double_quotes)
        return None

    def end_parens(self, open_at: int, start: int, what: str) -> int:
        src, depth, j = self.src, 1, open_at + 1
        while j < len(src):
            c = src[j]
            if c == "#" and src[j - 1] in " \t\n;&|(":
                end = src.find(_NEWLINE, j)
                j = len(src) if end < 0 else end
                continue
            nested = self.end_nested(j, in_double_quotes=False)
            if nested is not None:
                j = nested
                continue
            depth += {"(": 1, ")": -1}.get(c, 0)
            j += 1
            if depth == 0:
                return j
        raise self.error(what, start)

    def end_brace(self, start: int, in_double_quotes: bool) -> int:
        src, depth, j = self.src, 1, start + 2
        while j < len(src):
            nested = self.end_nested(j, in_double_quotes)
            if nested is not None:
                j = nested
                continue
            depth += {"{": 1, "}": -1}.get(src[j], 0)
            j += 1
            if depth == 0:
                return j
        raise self.error("unterminated parameter expansion ${...} starting", start)


def _drop_trailing_blank_lines(text: str) -> str:
    """``text`` without its trailing run of line breaks and blank lines (what ``(\\n[ \\t]*)+\\Z`` would
    remove), in linear time: that regular expression backtracks quadratically over many blank lines."""
    stripped = text.rstrip(" \t\n")
    tail = text[len(stripped):]
    cut = tail.find(_NEWLINE)
    return text if cut < 0 else stripped + tail[:cut]


def _decode_ansi(body: str) -> str:
    """Decode the common escapes of ``$'...'``; rarer ones stay raw, which only makes a word less movable."""
    return re.sub(r"\\(.)", lambda m: _ANSI_ESCAPES.get(m.group(1), m.group(0)), body, flags=re.DOTALL)


def _fold_line_breaks(raw: list[Token]) -> list[Token]:
    """Keep only the line breaks that separate commands (see the module docstring for the rule)."""
    out: list[Token] = []
    for i, tok in enumerate(raw):
        if not _is_newline(tok):
            out.append(tok)
            continue
        nxt = raw[i + 1] if i + 1 < len(raw) else None
        if not out or nxt is None or _is_newline(nxt):
            continue
        prev = out[-1]
        if prev.kind == "operator" and prev.text in _LINE_BREAK_IGNORED_AFTER:
            continue
        if prev.kind != "operator" and nxt.kind == "word" and nxt.text.startswith("-"):
            continue  # an option line continues the command above it
        out.append(tok)
    return out


def _is_newline(tok: Token) -> bool:
    return tok.kind == "operator" and tok.text == _NEWLINE


MAX_COMMAND_BYTES = 120_000
"""The longest command a step may have. Linux passes it to the shell as one argument, and refuses (E2BIG)
one longer than MAX_ARG_STRLEN, 131,072 bytes; the rest is headroom for what runs it (strict mode) and for
store paths replacing references."""


class CommandTooLong(NixWorkflowError):
    """A step's command is longer than the operating system lets a process receive as one argument."""


def check_length(step: str, cmd: str, growth: int = 0) -> None:
    """Refuse a command that could only fail with E2BIG when run, before any work is spent on it. `growth`: how
    many bytes longer it gets when its references (placeholders) are replaced by the paths of their objects, which
    is what runs (nixlib.dsl adds the file:line that defined the step to the message)."""
    size = len(cmd.encode("utf-8", "surrogateescape")) + growth
    if size > MAX_COMMAND_BYTES:
        many = cmd.count("/") > 1000
        raise CommandTooLong(
            f"step '{step}': its command is {size:,} bytes long"
            f"{' with the paths of its inputs in it' if growth > 0 else ''}, more than the {MAX_COMMAND_BYTES:,} a "
            "step can run (Linux hands a command to the shell as one argument of at most 131,072 bytes); nothing "
            "was run. Put the script in a file, make it an input (in Python `script = static('script.sh')`, then "
            "`output(f'bash {script}')`; in Nix a path such as ./script.sh) and keep the command short; pass "
            "large data as an input file too, not inline"
            + ("; a step that reads thousands of upstream outputs can gather them in stages (steps that each "
               "combine a slice, then one that combines those)." if many else ".")
        )


def tokenize(cmd: str) -> list[Token]:
    """Split a command into words, operators and redirections, the line-break rules already applied.

    Comments are dropped and a line break appears (as an operator token ``"\\n"``) only where it
    separates two commands. A redirection's text is its operator and target without the blanks
    between them (a blank is kept only where gluing would change the operator, as in ``< <(ls)``).
    Raises CommandSyntaxError for unterminated quotes and expansions.
    """
    try:
        raw = _Lexer(cmd).run()
    except RecursionError:
        raise CommandSyntaxError("expansions nested too deeply", cmd, 0) from None
    return _fold_line_breaks(raw)


def _render(tokens: list[Token]) -> str:
    parts: list[str] = []
    prev: Token | None = None
    for tok in tokens:
        if _is_newline(tok) or prev is None or _is_newline(prev):
            parts.append(tok.text)
        elif tok.kind == "operator" and tok.text in _ATTACHED and prev.kind != "operator":
            parts.append(tok.text)
        else:
            parts.append(" " + tok.text)
        prev = tok
    return "".join(parts)


def shell_form(cmd: str) -> str:
    """The command as it should be run: lines joined and whitespace folded as in :func:`normalise`,
    but no word moved or changed, so programs with unusual option conventions see what was written."""
    return _render(tokenize(cmd))


def _basename(word: str) -> str:
    return word.rsplit("/", 1)[-1]


def _command_word(words: list[str]) -> str:
    for word in words:
        if word not in _COMMAND_PREFIX_WORDS and not _ASSIGNMENT.match(word):
            return _basename(word)
    return ""


def _keep_as_written(segment: list[Token]) -> bool:
    words = [t.value for t in segment if t.kind == "word"]
    if _command_word(words) in _EXPRESSION_HEADS:
        return True
    return any(_basename(w) in _DATA_PROGRAMS for w in words if not w.startswith("-"))


def _is_option_or_end(segment: list[Token], i: int) -> bool:
    """True if word ``i`` cannot be an option's separate value: the command ends or it is an option."""
    if i >= len(segment):
        return True
    tok = segment[i]
    return tok.kind == "word" and bool(_OPTION_LIKE.match(tok.value))


def _option_key(tok: Token) -> str:
    m = _LONG_KEY_VALUE.match(tok.value) or _LONG_FLAG.fullmatch(tok.value) or _SHORT_FLAG.fullmatch(tok.value)
    assert m is not None
    return m.group(1)


def _is_movable(segment: list[Token], i: int) -> bool:
    tok = segment[i]
    if tok.kind != "word":
        return False
    if _LONG_KEY_VALUE.match(tok.value):
        return True
    if _LONG_FLAG.fullmatch(tok.value) or _SHORT_FLAG.fullmatch(tok.value):
        return _is_option_or_end(segment, i + 1)
    return False


def _family(key: str) -> str:
    """What an option sets, for the options whose relative order matters (`_FILTER_KEY`, `_NEGATED_KEY`)."""
    if _FILTER_KEY.fullmatch(key):
        return "include/exclude"
    m = _NEGATED_KEY.fullmatch(key)
    return m.group(1) if m else key


def _sort_run(run: list[Token], option_or_end_follows: bool) -> list[Token]:
    """The run sorted stably by key, except that options of one family with different keys (`--include=`
    and `--exclude=`, `--x` and `--no-x`) all sort under the family's first key present, keeping their
    relative order; a family of one key sorts under it, as any other option."""
    members: dict[str, set[str]] = {}
    for tok in run:
        members.setdefault(_family(_option_key(tok)), set()).add(_option_key(tok))
    ordered = sorted(run, key=lambda tok: min(members[_family(_option_key(tok))]))
    if not option_or_end_follows and not _LONG_KEY_VALUE.match(ordered[-1].value):
        return run  # a bare flag would end up in front of an operand and might swallow it
    return ordered


def _tidy_word(segment: list[Token], i: int) -> Token:
    tok = segment[i]
    if tok.kind == "word" and _BUNDLE.fullmatch(tok.text) and _is_option_or_end(segment, i + 1):
        text = "-" + "".join(sorted(tok.text[1:]))
        return Token(text, text, "word", tok.pos)
    return tok


def _normalise_simple(segment: list[Token]) -> list[Token]:
    if _keep_as_written(segment):
        return segment
    cut = next((i for i, t in enumerate(segment) if t.kind == "word" and t.value == "--"), len(segment))
    out: list[Token] = []
    i = 0
    while i < cut:
        if not _is_movable(segment, i):
            out.append(_tidy_word(segment, i))
            i += 1
            continue
        j = i
        while j < cut and _is_movable(segment, j):
            j += 1
        out.extend(_sort_run(segment[i:j], _is_option_or_end(segment, j)))
        i = j
    return out + segment[cut:]


def normalise(cmd: str) -> str:
    """Canonical form of a shell command: equal for commands that differ only in what the rules of
    the module docstring fold. Raises CommandSyntaxError for unterminated quotes and expansions."""
    out: list[Token] = []
    segment: list[Token] = []
    for tok in tokenize(cmd):
        if tok.kind == "operator":
            out += _normalise_simple(segment)
            out.append(tok)
            segment = []
        else:
            segment.append(tok)
    out += _normalise_simple(segment)
    return _render(out)


def is_normalised(cmd: str) -> bool:
    """Whether ``cmd`` is already in canonical form; a malformed command raises, it is not just False."""
    return normalise(cmd) == cmd


_ARITHMETIC = r"\(\(((?:[^()]|\([^()]*\))*)\)\)"  # `$((SEED * 2))`, `for ((i = 0; i < N; i++))`: bare names
_VARIABLE = re.compile(r"""\\.|'[^']*'|"((?:[^"\\]|\\.)*)"|\$?""" + _ARITHMETIC
                       + r"|\$\{?([A-Za-z_][A-Za-z0-9_]*)")  # '…' expands nothing
_IN_QUOTES = re.compile(r"\\.|\$" + _ARITHMETIC + r"|\$\{?([A-Za-z_][A-Za-z0-9_]*)")  # inside "…", ' is a character
_NAME = re.compile(r"(?<!\w)[A-Za-z_][A-Za-z0-9_]*")  # (not the x of 0x1F)


def expanded_variables(command: str) -> set[str]:
    """The names of the variables a shell command expands (`$SEED`, `${SEED:-0}`, `$((SEED * 2))`), outside single
    quotes (an over-approximation: a name in a comment or a quoted heredoc counts too, which only keys it)."""
    if "$" not in command and "((" not in command:
        return set()
    names = set()
    for m in _VARIABLE.finditer(command):
        quoted, arithmetic, name = m.groups()
        if quoted is not None:
            for q in _IN_QUOTES.finditer(quoted):
                names.update(_NAME.findall(q.group(1) or "") + ([q.group(2)] if q.group(2) else []))
        elif arithmetic is not None:
            names.update(_NAME.findall(arithmetic))
        elif name:
            names.add(name)
    return names
