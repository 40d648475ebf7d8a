"""The shape of store records, and the digest that seals them.

A record is read from a directory every user of a shared store can write to, so nothing in
it is believed before it is checked here: the JSON has the expected shape, every name that
will be joined to a store path is a 52-character Nix base32 name (so `/etc/passwd` or
`../realisations` can never become a path), and the `digest` over the rest of the record
matches (a truncated, bit-flipped or hand-edited record reads as absent and is re-derived).
Who wrote a record is the store's concern (nixlib.trust); this module only judges content.
"""

from __future__ import annotations

from typing import Any

from nixlib import nar
from nixlib.recipe import digest

KINDS = ("realisations", "recipes")
MAX_BYTES = 64 << 20  # a record larger than this is not one we wrote; never read it into memory


class InvalidRecord(ValueError):
    """A record that must not be used; the message says why (for `ignoring invalid record PATH: why`)."""


def is_name(value: Any) -> bool:
    """True for a store object name or a key: exactly 52 characters of the Nix base32 alphabet."""
    return isinstance(value, str) and nar.is_nar_hash(value)


def seal(doc: dict[str, Any]) -> dict[str, Any]:
    """`doc` with its `digest` (Nix base32 SHA-256 of the canonical JSON of everything else)."""
    body = {k: v for k, v in doc.items() if k != "digest"}
    return body | {"digest": digest(body)}


def check(kind: str, key: str, doc: Any) -> dict[str, Any]:
    """Return `doc` if it is a valid, intact record of `kind` for `key`; raise InvalidRecord otherwise."""
    if not isinstance(doc, dict):
        raise InvalidRecord(f"not a JSON object but {type(doc).__name__}")
    if kind == "realisations":
        _check_realisation(key, doc)
    elif kind == "recipes":
        _check_recipe(key, doc)
    else:
        raise InvalidRecord(f"unknown record kind {kind!r}")
    sealed = doc.get("digest")
    if not isinstance(sealed, str):
        raise InvalidRecord("no digest (written by an older version or by hand)")
    try:
        actual = digest({k: v for k, v in doc.items() if k != "digest"})
    except (TypeError, ValueError) as e:  # NaN, infinities: not canonical JSON
        raise InvalidRecord(f"not canonical JSON ({e})") from None
    if actual != sealed:
        raise InvalidRecord("digest mismatch (the record was changed after it was written)")
    if kind == "recipes" and "last_resolved_key" not in doc:
        return doc | {"last_resolved_key": key}  # a realisation of the recipe's own key (see _check_recipe)
    return doc


def _need(doc: dict[str, Any], field: str, types: type | tuple[type, ...], what: str) -> Any:
    value = doc.get(field)
    if not isinstance(value, types) or isinstance(value, bool) and bool not in _tuple(types):
        raise InvalidRecord(f"field '{field}' is not {what}")
    return value


def _tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


def _names_map(doc: dict[str, Any], field: str, non_empty: bool) -> None:
    value = _need(doc, field, dict, "an object of name -> store object")
    if non_empty and not value:
        raise InvalidRecord(f"field '{field}' is empty")
    for name, h in value.items():
        if not is_name(h):
            raise InvalidRecord(f"{field}[{name!r}] is not a store object name: {str(h)[:80]!r}")


def _check_realisation(key: str, doc: dict[str, Any]) -> None:
    if doc.get("resolved_key") != key:
        raise InvalidRecord(f"resolved_key {str(doc.get('resolved_key'))[:80]!r} is not the file's key {key}")
    if not is_name(doc.get("recipe_key")):
        raise InvalidRecord("field 'recipe_key' is not a key")
    for field in ("name", "command", "host", "user", "tool", "log"):
        _need(doc, field, str, "a string")
    for field in ("start", "end", "duration"):
        _need(doc, field, (int, float), "a number")
    _need(doc, "exit", int, "an integer")
    for field in ("options", "provenance"):
        _need(doc, field, dict, "an object")
    _names_map(doc, "outputs", non_empty=True)
    _names_map(doc, "files", non_empty=False)
    env = _need(doc, "env", dict, "an object")
    if not isinstance(env.get("identity"), dict):
        raise InvalidRecord("env.identity is not an object")
    paths = env.get("paths")
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise InvalidRecord("env.paths is not a list of strings")
    for n, entry in enumerate(_need(doc, "inputs", list, "a list")):
        _check_input(n, entry)


def _check_input(n: int, entry: Any) -> None:
    if not isinstance(entry, dict):
        raise InvalidRecord(f"inputs[{n}] is not an object")
    if not is_name(entry.get("object")):
        raise InvalidRecord(f"inputs[{n}].object is not a store object name")
    if entry.get("resolved_key") is not None and not is_name(entry["resolved_key"]):
        raise InvalidRecord(f"inputs[{n}].resolved_key is not a key")
    for field in ("step", "output"):
        if entry.get(field) is not None and not isinstance(entry[field], str):
            raise InvalidRecord(f"inputs[{n}].{field} is not a string")


def _check_recipe(key: str, doc: dict[str, Any]) -> None:
    """A recipes/ record: `last_resolved_key` names the realisation the recipe key last realised to. A step
    without upstream steps realises to its own recipe key, so its realisation says all the index would: the
    store links `recipes/<key>.json` to `realisations/<key>.json` (one inode, no second record), and such a
    record is valid here as a valid realisation of `key` whose last resolved key is `key` itself."""
    if doc.get("recipe_key") != key:
        raise InvalidRecord(f"recipe_key {str(doc.get('recipe_key'))[:80]!r} is not the file's key {key}")
    if "last_resolved_key" not in doc and doc.get("resolved_key") == key:
        _check_realisation(key, doc)
        return
    if not is_name(doc.get("last_resolved_key")):
        raise InvalidRecord("field 'last_resolved_key' is not a key")
    if doc.get("recipe") is not None and not isinstance(doc["recipe"], dict):
        raise InvalidRecord("field 'recipe' is not an object")


def parse_file_name(name: str) -> tuple[str, int | None] | None:
    """`<key>.json` -> (key, None); `<key>.<uid>.json` (a user's own copy) -> (key, uid); else None."""
    if not name.endswith(".json"):
        return None
    parts = name[:-5].split(".")
    if len(parts) == 1 and is_name(parts[0]):
        return parts[0], None
    if len(parts) == 2 and is_name(parts[0]) and parts[1].isdigit() and parts[1].isascii():
        return parts[0], int(parts[1])
    return None
