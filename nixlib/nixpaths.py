"""The path literals of a Nix file (`./config.json`, `../src`, `/data/x`, `~/cfg`, the fixed part of
`./data/${name}.json`), for the evaluation cache.

nw's guard traces every file the user's own Nix code reads, but code imported from the Nix store (a
package set: `pkgs.lib.importJSON ./config.json`, `lib.cleanSource ./src`, `callPackage ./tool.nix`)
runs with Nix's untraced builtins, and Nix logs none of those reads. Every local path such code can
read reaches it as a path value, and a path value starts as a literal in a local Nix file: so the
literals of the local files an evaluation parsed bound what it may have read. Strings and comments
are skipped (a `"/usr/bin"` in a builder script is no path), as Nix's lexer does.
"""

from __future__ import annotations

import os
import re

_PATH_CHAR = r"[a-zA-Z0-9._+\-]"
_PATH = re.compile(rf"{_PATH_CHAR}*(?:/{_PATH_CHAR}+)+/?")
_PATH_SEG = re.compile(rf"{_PATH_CHAR}*/(?=\$\{{)")  # `./${x}`: a path that starts with an interpolation
_HPATH = re.compile(rf"~(?:/{_PATH_CHAR}+)+/?|~/(?=\$\{{)")
_OTHER = [re.compile(r"[a-zA-Z_][a-zA-Z0-9_'\-]*"),  # identifiers and numbers win a tie, as in Nix's lexer
          re.compile(r"[0-9]+(?:\.[0-9]*)?(?:[Ee][+-]?[0-9]+)?"),
          re.compile(rf"<{_PATH_CHAR}+(?:/{_PATH_CHAR}+)*>"),  # <nixpkgs>: a search path, not a file
          re.compile(r"[a-zA-Z][a-zA-Z0-9+\-.]*:[a-zA-Z0-9%/?:@&=+$,\-_.!~*']+")]  # a URI
_PATH_REST = re.compile(rf"(?:{_PATH_CHAR}|/)*")


def literals(text: str) -> list[str]:
    """The path literals of Nix source `text`, as written; an interpolated path gives its fixed directory."""
    found: list[str] = []
    _Lexer(text, found).expression(0, closing=False)
    return found


def literal_paths(file: str) -> list[str]:
    """The absolute, lexically normalised paths (as Nix resolves them) of the literals in `file`."""
    try:
        with open(file, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return []
    base = os.path.dirname(file)
    paths: dict[str, None] = {}
    for literal in literals(text):
        if literal.startswith("~"):
            path = os.path.expanduser(literal)
        else:
            path = os.path.join(base, literal)
        paths[os.path.normpath(path)] = None
    return list(paths)


class _Lexer:
    """Just enough of Nix's lexer to tell path literals from strings, comments and other tokens."""

    def __init__(self, text: str, found: list[str]) -> None:
        self.text = text
        self.found = found

    def expression(self, i: int, closing: bool) -> int:
        """Lex from `i`; with `closing`, up to and past the `}` that ends an interpolation."""
        text, depth = self.text, 0
        while i < len(text):
            c = text[i]
            if c.isspace():
                i += 1
            elif c == "#":
                end = text.find("\n", i)
                i = len(text) if end < 0 else end + 1
            elif text.startswith("/*", i):
                end = text.find("*/", i + 2)
                i = len(text) if end < 0 else end + 2
            elif c == '"':
                i = self.string(i + 1)
            elif text.startswith("''", i):
                i = self.indented(i + 2)
            elif c == "{" or text.startswith("${", i):
                depth += 1
                i += 1 if c == "{" else 2
            elif c == "}":
                i += 1
                if depth == 0 and closing:
                    return i
                depth = max(0, depth - 1)
            else:
                i = self.token(i)
        return i

    def token(self, i: int) -> int:
        """The longest token at `i` (ties to identifiers and numbers); a path is recorded."""
        text = self.text
        best, path = 0, False
        for pattern in _OTHER:
            m = pattern.match(text, i)
            if m and m.end() - i > best:
                best, path = m.end() - i, False
        for pattern in (_PATH, _PATH_SEG, _HPATH):
            m = pattern.match(text, i)
            if m and m.end() - i > best:
                best, path = m.end() - i, True
        if best == 0:
            return i + 1
        if not path:
            return i + best
        literal = text[i:i + best]
        end = i + best
        if text.startswith("${", end):  # `./data/${name}.json`: only the fixed directory is known
            literal = literal if literal.endswith("/") else literal.rsplit("/", 1)[0] + "/"
            while text.startswith("${", end):
                end = self.expression(end + 2, closing=True)
                end = _PATH_REST.match(text, end).end()  # type: ignore[union-attr]
        self.found.append(literal.rstrip("/") or "/")
        return end

    def string(self, i: int) -> int:
        """Past the closing `"` of a string starting at `i`, lexing its interpolations."""
        text = self.text
        while i < len(text):
            c = text[i]
            if c == "\\":
                i += 2
            elif c == '"':
                return i + 1
            elif text.startswith("${", i):
                i = self.expression(i + 2, closing=True)
            elif c == "$" and i + 1 < len(text) and text[i + 1] not in '"\\':
                i += 2  # `$$`, `$x`: no interpolation
            else:
                i += 1
        return i

    def indented(self, i: int) -> int:
        """Past the closing `''` of an indented string starting at `i`, lexing its interpolations."""
        text = self.text
        while i < len(text):
            if text.startswith("''$", i) or text.startswith("'''", i):
                i += 3
            elif text.startswith("''\\", i):
                i += 4
            elif text.startswith("''", i):
                return i + 2
            elif text.startswith("${", i):
                i = self.expression(i + 2, closing=True)
            elif text[i] == "$" and i + 1 < len(text) and text[i + 1] != "'":
                i += 2
            else:
                i += 1
        return i
