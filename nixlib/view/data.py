"""What `nw view` shows, read from the store's validated records and the runs' journals.

Every answer is built from data, never from a path found in data: a key or object name from a
journal, a summary or a request is used only after `records.is_name` accepts it, records are read
through the store's trusted readers, objects are served only while they re-hash to their name, and
a path inside an object is walked one component at a time without following any symlink.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import socket
import stat
from pathlib import Path
from typing import Any
from urllib.parse import quote

from nixlib import records
from nixlib.lineage import last_run
from nixlib.statmemo import user_cache_dir
from nixlib.store import Store
from nixlib.trust import NotTrusted, read_owned
from nixlib.view.history import find_journal, journals, live

PREVIEW_BYTES = 256 << 10
RUN_ID = re.compile(r"[0-9]{1,20}-[0-9]{1,10}")  # a journal's name: <start ms>-<pid>
LOG_TAIL = 64 << 10
TABLE_ROWS = 200
IMAGES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
          ".webp": "image/webp", ".svg": "image/svg+xml"}


class Refused(Exception):
    """A request the viewer will not answer; `status` is the HTTP status, the message says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ViewData:
    """Read-only queries over one store and one output-link directory."""

    def __init__(self, store: Store, out_dir: Path) -> None:
        self.store = store
        self.out_dir = Path(out_dir).absolute()
        self.host = socket.gethostname()

    # ---- runs ---------------------------------------------------------------------------

    def runs(self) -> list[dict[str, Any]]:
        """Recent runs here (newest first), then every step recorded in the store (any front door)."""
        out = []
        for doc in journals(self.out_dir, self.store.trusted):
            live = self._live(doc)
            statuses = [_status(e, live) for e in doc["steps"].values() if isinstance(e, dict)]
            out.append({"id": doc["id"], "label": str(doc.get("tool") or "nw run"),
                        "started": doc.get("started"), "ended": doc.get("ended"), "live": live,
                        "steps": len(statuses),
                        "counts": {s: statuses.count(s) for s in sorted(set(statuses))}})
        if not out and last_run(self.out_dir):
            out.append({"id": "last", "label": "last nw run", "steps": len(last_run(self.out_dir)), "live": False})
        out.append({"id": "store", "label": "all records in the store", "live": False})
        return out

    def run(self, run_id: str) -> dict[str, Any]:
        """The graph of a run: nodes (steps) with status, keys, outputs and upstream node ids."""
        if run_id == "store":
            return self._store_graph()
        if run_id == "last":
            return self._summary_graph(last_run(self.out_dir))
        doc = find_journal(self.out_dir, run_id, self.store.trusted) if RUN_ID.fullmatch(run_id) else None
        if doc is None:
            raise Refused(404, f"no run {run_id!r} in {self.out_dir}")
        live = self._live(doc)
        nodes = []
        for name, entry in doc["steps"].items():
            if not isinstance(entry, dict):
                continue
            listed = entry.get("upstream")  # a journal is data: anything but a list of names is no upstream
            listed = listed if isinstance(listed, list) else []
            upstream = [u for u in listed if isinstance(u, str) and u in doc["steps"]]
            nodes.append(self._node(str(name), entry, _status(entry, live), upstream))
        return {"id": run_id, "live": live, "started": doc.get("started"), "ended": doc.get("ended"),
                "nodes": nodes}

    def _live(self, doc: dict[str, Any]) -> bool:
        """Whether the run still runs: not ended, and its process alive, the same one (a process started after the
        run began only reuses its pid). A run on another host cannot be checked and reads as live until it ends."""
        return live(doc, self.host)

    def _node(self, name: str, entry: dict[str, Any], status: str, upstream: list[str]) -> dict[str, Any]:
        rk = entry.get("resolved_key")
        node: dict[str, Any] = {"id": name, "name": name, "status": status, "upstream": upstream,
                                "resolved_key": rk if records.is_name(rk) else None}
        for field in ("start", "end"):
            if isinstance(entry.get(field), (int, float)):
                node[field] = entry[field]
        if isinstance(entry.get("error"), str):
            node["error"] = entry["error"]
        if status in ("done", "cached") and node["resolved_key"]:
            doc = self.store.read_record("realisations", node["resolved_key"])
            if doc is not None:
                node.update(outputs=doc["outputs"], duration=doc["duration"], start=doc["start"], end=doc["end"])
                self._mark_missing(node, doc)
            else:
                node["status"] = "gone"  # its record was collected (or is not trusted here)
        return node

    def _mark_missing(self, node: dict[str, Any], doc: dict[str, Any]) -> None:
        """A result whose output the store no longer holds (quarantined, collected, removed by hand) is not shown as
        available: the node is gone, and says what became of each such output (as `nw show` does). Only presence
        is checked here, for every step on each poll: a big run's objects are not walked. An object changed in place
        is found when it is opened (step details, files), which sets it aside; the graph shows it gone from then on."""
        missing = self._missing(doc, walk=False)
        if missing:
            node.update(status="gone", missing=missing)

    def _missing(self, doc: dict[str, Any], walk: bool = True) -> dict[str, str]:
        """The outputs of a record the store no longer holds (`walk`: intact, re-hashed if its stat memo cannot
        vouch for it), each with what became of it."""
        from nixlib.cli import _missing_output  # the words `nw show` uses

        held = self.store.has if walk else (lambda h: os.path.lexists(self.store.object_path(h)))
        return {k: _missing_output(self.store, h)["why"] for k, h in doc["outputs"].items()
                if not (records.is_name(h) and held(h))}

    def _summary_graph(self, summary: dict[str, Any]) -> dict[str, Any]:
        """A run known only by `.nw-last-run.json` (older runs): upstream from each realisation's inputs."""
        nodes = []
        for name, entry in summary.items():
            if not isinstance(entry, dict):
                continue
            node = self._node(str(name), entry, str(entry.get("status", "unknown")), [])
            doc = self.store.read_record("realisations", node["resolved_key"]) if node["resolved_key"] else None
            if doc is not None:
                node["upstream"] = sorted({i["step"] for i in doc["inputs"] if i.get("step") in summary})
            nodes.append(node)
        return {"id": "last", "live": False, "nodes": nodes}

    def _store_graph(self) -> dict[str, Any]:
        """Every trusted, valid realisation in the store (Snakemake and Luigi runs, other checkouts):
        upstream by recorded key, and for files known only by content, by the realisations that made them."""
        docs: dict[str, dict[str, Any]] = {}
        for key, path in self.store.record_files("realisations"):
            if key is None or key in docs:
                continue
            doc = self.store.load_record("realisations", key, path)
            if doc is not None:
                docs[key] = doc
        producers: dict[str, list[str]] = {}
        for key, doc in docs.items():
            for h in doc["outputs"].values():
                producers.setdefault(h, []).append(key)
        nodes = []
        for key, doc in docs.items():
            up = {i["resolved_key"] for i in doc["inputs"] if i.get("resolved_key") in docs}
            for h in doc["files"].values():
                up.update(producers.get(h, []))
            up.discard(key)
            node = {"id": key, "name": doc["name"], "status": "done", "resolved_key": key, "outputs": doc["outputs"],
                    "upstream": sorted(up), "start": doc["start"], "end": doc["end"], "duration": doc["duration"]}
            self._mark_missing(node, doc)
            nodes.append(node)
        return {"id": "store", "live": False, "nodes": nodes}

    # ---- one step -----------------------------------------------------------------------

    def step(self, key: str) -> dict[str, Any]:
        """A realisation's provenance: commands, env, inputs, outputs, timings, host and user."""
        doc = self.store.read_record("realisations", _name(key, "key"))
        if doc is None:
            raise Refused(404, f"no trusted, valid realisation {key} in {self.store.root}")
        recipe = doc.get("recipe") if isinstance(doc.get("recipe"), dict) else {}
        answer = {"name": doc["name"], "resolved_key": key, "recipe_key": doc["recipe_key"],
                  "command": doc["command"], "canonical": recipe.get("command"), "env": doc["env"],
                  "inputs": doc["inputs"], "files": doc["files"], "outputs": doc["outputs"], "start": doc["start"],
                  "end": doc["end"], "duration": doc["duration"], "exit": doc["exit"], "host": doc["host"],
                  "user": doc["user"], "tool": doc["tool"], "options": doc["options"],
                  "provenance": doc["provenance"]}
        missing = self._missing(doc)  # the record stays readable; outputs the store no longer holds say so
        return answer | ({"missing_outputs": missing} if missing else {})

    def log(self, key: str) -> dict[str, Any]:
        """The tail of a key's log, from the store's logs/ (or this user's log cache) only: a regular file,
        never a symlink, written by a trusted user."""
        key = _name(key, "key")
        root = self.store.root / "logs"
        candidates = [root / f"{key}.log"] + [root / f"{key}.{uid}.log" for uid in sorted(self.store.trusted)]
        candidates.append(user_cache_dir(self.store.root, "logs") / f"{key}.log")
        for path in candidates:
            text = self._read_tail(path)
            if text is not None:
                return text
        return {"text": "", "size": 0, "missing": True}

    def _read_tail(self, path: Path) -> dict[str, Any] | None:
        try:
            got = read_owned(path, self.store.trusted, LOG_TAIL, tail=True)
        except NotTrusted:
            return None
        if got is None:
            return None
        data, st = got
        return {"text": data.decode("utf-8", "replace"), "size": st.st_size, "truncated": st.st_size > LOG_TAIL}

    # ---- objects ------------------------------------------------------------------------

    def _locate(self, obj: str, rel: str) -> tuple[Path, os.stat_result]:
        """The entry `rel` inside object `obj`, walked without following symlinks; Refused for anything else.
        `rel`'s components are file names as bytes (a name need not be UTF-8: the server decodes the request's
        percent-encoded bytes with surrogateescape, as `ref` in a listing encodes them)."""
        obj = _name(obj, "object")
        if not self.store.has(obj):
            raise Refused(404, f"object {obj} is not in the store (or does not re-hash to its name)")
        path = self.store.object_path(obj)
        try:
            parts = [os.fsdecode(p.encode("utf-8", "surrogateescape")) for p in rel.split("/") if p]
        except UnicodeError:
            raise Refused(400, "a path inside an object must be percent-encoded bytes") from None
        if any(p in (".", "..") or "\0" in p for p in parts):
            raise Refused(400, "a path inside an object may not contain '.' or '..' components")
        st = os.lstat(path)
        for n, part in enumerate(parts):
            if not stat.S_ISDIR(st.st_mode):
                raise Refused(400, f"{readable('/'.join(parts[:n])) or 'the object'} is not a directory")
            path = path / part
            try:
                st = os.lstat(path)
            except OSError:
                raise Refused(404, f"no {readable('/'.join(parts[:n + 1]))} in object {obj}") from None
        return path, st

    def files(self, obj: str, rel: str) -> dict[str, Any]:
        """A directory listing, or a preview of a file (text, table, JSON, image) inside an object."""
        path, st = self._locate(obj, rel)
        if stat.S_ISLNK(st.st_mode):
            return {"type": "symlink", "target": readable(os.readlink(path))}  # shown, never followed
        if stat.S_ISDIR(st.st_mode):
            entries = []
            with os.scandir(path) as it:
                for e in it:
                    est = e.stat(follow_symlinks=False)
                    kind = "dir" if stat.S_ISDIR(est.st_mode) else "symlink" if stat.S_ISLNK(est.st_mode) else "file"
                    entries.append({"name": readable(e.name), "ref": ref(e.name), "type": kind, "size": est.st_size})
            return {"type": "dir", "entries": sorted(entries, key=lambda e: (e["type"] != "dir", e["name"]))}
        return self._preview(path, st, rel)

    def _preview(self, path: Path, st: os.stat_result, rel: str) -> dict[str, Any]:
        suffix = Path(rel or path.name).suffix.lower()
        base = {"type": "file", "size": st.st_size}
        if suffix in IMAGES:
            return base | {"preview": "image"}
        data = self._read_file(path, PREVIEW_BYTES)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            if b"\0" in data[:4096]:
                return base | {"preview": "binary"}
            text = data.decode("utf-8", "replace")
        truncated = st.st_size > len(data)
        if suffix in (".csv", ".tsv"):
            rows = list(csv.reader(io.StringIO(text), delimiter="\t" if suffix == ".tsv" else ","))
            return base | {"preview": "table", "rows": rows[:TABLE_ROWS], "more": truncated or len(rows) > TABLE_ROWS}
        if suffix == ".json" and not truncated:
            try:
                return base | {"preview": "json", "text": json.dumps(json.loads(text), indent=2)}
            except ValueError:
                pass
        return base | {"preview": "text", "text": text, "more": truncated}

    def raw(self, obj: str, rel: str) -> tuple[bytes, str]:
        """An image inside an object, for <img>: only the image types, only regular files."""
        path, st = self._locate(obj, rel)
        ctype = IMAGES.get(Path(rel).suffix.lower())
        if ctype is None or not stat.S_ISREG(st.st_mode):
            raise Refused(400, "only image files are served raw")
        return self._read_file(path, 32 << 20), ctype

    @staticmethod
    def _read_file(path: Path, limit: int) -> bytes:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        with open(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise Refused(400, "not a regular file")
            return f.read(limit)


def readable(name: str) -> str:
    """A file name as the page shows it: its bytes as UTF-8, any other byte as \\xNN (JSON cannot carry the lone
    surrogates a non-UTF-8 name decodes to: the page would show U+FFFD and could not ask for the file)."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def ref(name: str) -> str:
    """A file name as the page sends it back in `path`: its bytes percent-encoded (see `_locate`)."""
    return quote(os.fsencode(name), safe="")


def _status(entry: dict[str, Any], live: bool) -> str:
    status = str(entry.get("status", "unknown"))
    if status in ("pending", "running") and not live:
        return "interrupted"  # its run was killed before it could say so
    return status


def _name(value: str, what: str) -> str:
    if not records.is_name(value):
        raise Refused(400, f"not {'an' if what[0] in 'aeiou' else 'a'} {what}: expected 52 characters of Nix base32")
    return value


