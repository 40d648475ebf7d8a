"""A Jupyter notebook as code a step runs (`jupyter nbconvert --execute nb.ipynb`, papermill): what running it depends
on (its code cells and kernel language, not the outputs and execution counts a run writes back into it) and its
Python source, for the modules it imports and the data files it names (nixlib.codefiles)."""

from __future__ import annotations

import json
import re

_MAGIC = re.compile(rb"^([ \t]*)[%!].*$", re.MULTILINE)  # IPython's `%matplotlib inline`, `!pip install …`


def cells(data: bytes) -> list[object] | None:
    """What running a Jupyter notebook depends on: its kernel's language and its code cells' sources, in order (not
    its outputs, execution counts or markdown); None if the file is no notebook JSON (then it is keyed whole)."""
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
    return [language, *(c.get("source") for c in cells if isinstance(c, dict) and c.get("cell_type") == "code")]


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
            parts.append(_MAGIC.sub(rb"\1pass", text.encode(errors="replace")))
    return b"\n".join(parts)
