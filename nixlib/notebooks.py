"""A Jupyter notebook as code a step runs (`jupyter nbconvert --execute nb.ipynb`, papermill): what running it depends
on (its code cells and kernel language, not the outputs and execution counts a run writes back into it) and its
Python source, for the modules it imports and the data files it names (nixlib.codefiles)."""

from __future__ import annotations

import json
import re
import warnings

_MAGIC = re.compile(rb"^([ \t]*)[%!].*$", re.MULTILINE)  # IPython's `%matplotlib inline`, `!pip install …`
_FUTURE = re.compile(rb"^([ \t]*)from[ \t]+__future__[ \t]+import\b.*$", re.MULTILINE)
_CONTINUED = re.compile(rb"(?:else|elif|except|finally|case)\b")  # (a line going on with the statement before)
_INCOMPLETE = ("never closed", "unterminated triple", "EOF", "expected an indented block")  # (a statement goes on)
_MAX_CHUNK = 50  # (lines of a statement that does not compile taken together, at most)
# Cell tags that change what running a notebook does: papermill injects its parameters after the cell tagged
# `parameters` (at the top without one); nbclient (nbconvert, papermill) goes on after an error in a cell tagged
# `raises-exception` and skips one tagged `skip-execution`.
BEHAVIOUR_TAGS = frozenset({"parameters", "raises-exception", "skip-execution"})


def cells(data: bytes) -> list[object] | None:
    """What running a Jupyter notebook depends on: its kernel's language and name (`kernelspec`: the kernel nbconvert
    and papermill start) and its code cells' sources, in order, with the cell tags that change what runs
    (BEHAVIOUR_TAGS; a markdown cell's too, where it stands: papermill injects after any cell tagged `parameters`)
    (not its outputs, execution counts, other metadata or markdown); None if the file is no notebook JSON (then it is
    keyed whole)."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return None
    cells = doc.get("cells") if isinstance(doc, dict) else None
    if not isinstance(cells, list):
        return None
    meta = doc.get("metadata")
    kernel = meta.get("kernelspec") if isinstance(meta, dict) else None
    language = kernel.get("language") if isinstance(kernel, dict) else None
    name = kernel.get("name") if isinstance(kernel, dict) else None  # (the kernel nbconvert and papermill start)
    out: list[object] = [language, name]
    for c in cells:
        if not isinstance(c, dict):
            continue
        code = c.get("cell_type") == "code"
        meta = c.get("metadata")
        tags = meta.get("tags") if isinstance(meta, dict) else None
        tags = sorted({t for t in tags if isinstance(t, str) and t in BEHAVIOUR_TAGS}) if isinstance(tags, list) \
            else []
        if tags:  # (a cell without such a tag keys as before: its source alone)
            out.append({"source": c.get("source") if code else None, "tags": tags})
        elif code:
            out.append(c.get("source"))
    return out


def code(data: bytes) -> bytes:
    """The Python source of a Jupyter notebook's code cells, one after another (IPython magics and shell escapes
    made `pass`); empty if the file is no notebook JSON."""
    try:
        cells = json.loads(data).get("cells", [])
    except (ValueError, AttributeError, RecursionError):
        return b""
    parts = []
    for cell in cells if isinstance(cells, list) else ():
        if isinstance(cell, dict) and cell.get("cell_type") == "code":
            source = cell.get("source", "")
            text = "".join(source) if isinstance(source, list) and all(isinstance(x, str) for x in source) \
                else source if isinstance(source, str) else ""
            parts.append(_python(_MAGIC.sub(rb"\1pass", text.encode(errors="replace"))))
    return b"\n".join(parts)


def _python(cell: bytes) -> bytes:
    """A code cell as Python that compiles, so that one cell that is none (a `%%bash` cell's shell lines, `files =
    !ls`, `df.head?`, a top-level `await`) does not hide the imports and data files of every other (the cells are
    compiled as one text): its top-level statements that compile, and of the others each line that compiles alone;
    a late `from __future__` import made `pass`."""
    cell = _FUTURE.sub(rb"\1pass", cell).replace(b"\xef\xbb\xbf", b"")  # (a BOM compiles at the start only)
    if _compiles(cell) is None:
        return cell
    out: list[bytes] = []
    chunk: list[bytes] = []
    for line in [*cell.split(b"\n"), b"pass"]:  # (a last statement ends the last chunk)
        if chunk and line[:1] not in b" \t#)]}" and not _CONTINUED.match(line):  # a statement starts here
            text = b"\n".join(chunk)
            error = _compiles(text)
            if error is None:
                out.append(text)
            elif len(chunk) < _MAX_CHUNK and any(m in error for m in _INCOMPLETE):
                chunk.append(line)  # (a string or bracket still open: the statement goes on)
                continue
            else:
                out += [x.strip() for x in chunk if x.strip() and _compiles(x.strip()) is None]
            chunk = []
        chunk.append(line)
    return b"\n".join(out)


def _compiles(source: bytes) -> str | None:
    """None if Python source compiles, else why not."""
    try:
        with warnings.catch_warnings():  # (a `"\d"` or `x is 1` in a cell: not the user's business here)
            warnings.simplefilter("ignore")
            compile(source, "<cell>", "exec", dont_inherit=True)
        return None
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError) as e:
        return str(e) or type(e).__name__
