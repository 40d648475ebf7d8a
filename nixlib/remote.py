"""Remote caches: substitute realisations from, and push them to, storage without a shared filesystem.

A remote is laid out like a Nix binary cache (docs/remote.md):

    nar/<object hash>.nar.xz          an object's NAR stream, xz-compressed (`.nar`: uncompressed)
    realisations/<resolved key>.json  the realisation record (as in the store, sealed by its digest) plus
                                      `sig`: `KEYNAME:BASE64`, ed25519 over the canonical JSON of the rest

Nothing read from a remote is believed on the way in: a record is used only if its signature is by a key in
`trusted-public-keys` and it passes the store's record validation; an object only once its NAR stream hashes
to its name, and it enters the store only through ingest (which re-hashes what was unpacked). A pulled record
is written through the store's normal writer, so it becomes this user's record, its provenance saying where
it was substituted from and who signed it. A remote that cannot be reached costs one warning; the run goes on
with local work. Before building a miss, a pushing host leases the key on the remote, and a host that finds
another's live lease waits for its record (nixlib/remote_lease.py).

Configuration (the command line sets the same variables, so every front door in the process sees them):
`NIX_WORKFLOW_REMOTE` (URL), `NIX_WORKFLOW_TRUSTED_KEYS`, `NIX_WORKFLOW_SECRET_KEY_FILE`, `NIX_WORKFLOW_PUSH`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import lzma
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nixlib import base32, faults, nar, narread, records, remote_lease, signing, temproots
from nixlib.errors import Interrupted, NixWorkflowError
from nixlib.recipe import canonical_json
from nixlib.remote_progress import Transfer
from nixlib.remotes import (
    Backend,
    Grew,
    NotAFile,
    Progress,
    RemoteDown,
    Stream,
    UnreadableKey,
    UnsafeDirectory,
    open_backend,
)
from nixlib.runner import CHILDREN
from nixlib.store import Store, force_remove

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

ENV_URL = "NIX_WORKFLOW_REMOTE"
ENV_TRUSTED = "NIX_WORKFLOW_TRUSTED_KEYS"
ENV_SECRET = "NIX_WORKFLOW_SECRET_KEY_FILE"
ENV_PUSH = "NIX_WORKFLOW_PUSH"
ENV_COMPRESSION = "NIX_WORKFLOW_REMOTE_COMPRESSION"  # xz (default) or none
_XZ_PRESET = 1  # fast; NARs of outputs are often already compressed data
_CHUNK = 1 << 20

_warned: set[str] = set()
_warn_lock = threading.Lock()


def warn(message: str) -> None:
    """Print a warning once per process."""
    with _warn_lock:
        if message in _warned:
            return
        _warned.add(message)
    print(f"warning: {message}", file=sys.stderr, flush=True)


class UnsafeRemote(NixWorkflowError):
    """A push that would write through a directory of a `file://` remote that is a symbolic link (UnsafeDirectory):
    `nw run` warns and goes on, `nw push` fails with it."""


class Rejected(Exception):
    """Something on the remote failed verification: not used, never stored."""


def _signature(doc: dict[str, Any], keys: dict[str, list[Ed25519PublicKey]]) -> tuple[Any, str | None]:
    """(the record's `sig`, taken out of `doc`; the name of the key among `keys` that made it over the canonical
    JSON of the rest, or None): the one verification of a remote record, for substitution (fetch_record, the
    trusted keys) and for telling a forged record from a good one before replacing it (_forged_record)."""
    sig = doc.pop("sig", None)
    return sig, signing.verify(canonical_json(doc).encode(), sig, keys)


class Remote:
    """One configured remote: what this process trusts from it and whether it pushes to it."""

    def __init__(self, url: str, trusted: str = "", secret_key_file: str | None = None, push: bool = False,
                 compression: str = "xz") -> None:
        self.url = url
        self.backend: Backend = open_backend(url)
        try:
            self.trusted = signing.parse_public_keys(trusted)
        except NixWorkflowError as e:  # the keys come through the environment from every place they are set
            raise NixWorkflowError(f"{e} (in the trusted public keys of remote {url}: {ENV_TRUSTED}, "
                                   "`trusted-public-keys` under `remote:` in nixworkflow.yaml, "
                                   "--nixworkflow-trusted-keys or luigi.cfg's trusted_public_keys)") from None
        self.secret = signing.load_secret(secret_key_file) if secret_key_file else None
        self.push_enabled = push
        if compression not in ("xz", "none"):
            raise NixWorkflowError(f"{ENV_COMPRESSION}={compression!r}: choose xz or none")
        self.suffix = ".nar.xz" if compression == "xz" else ".nar"
        self.down = False
        self.leases_refused = False  # leases/ is a symbolic link or no directory: no leasing, no waiting
        self._missing: set[str] = set()
        self._bad_objects: set[str] = set()
        self._sizes: dict[str, int] = {}  # object -> its NAR size, as a verified record signs it (_note_sizes)
        self.pulled: set[str] = set()  # keys this process recorded from the remote (`nw pull` says "pulled")
        self._leases: dict[str, tuple[remote_lease.Lease, Path]] = {}  # held by this process: lease, its scratch
        self._lock = threading.Lock()

    # ---- health -------------------------------------------------------------------------

    def _went_down(self, e: RemoteDown) -> None:
        self.down = True
        warn(f"remote {self.url} is unavailable ({str(e)[:300]}); continuing without it (steps run locally and "
             "nothing is pushed)")

    # ---- records ------------------------------------------------------------------------

    def fetch_record(self, rk: str) -> tuple[dict[str, Any], str] | None:
        """(the remote realisation of `rk`, the trusted key that signed it), or None if absent or not believed.
        Raises RemoteDown."""
        data = self._record_bytes(f"realisations/{rk}.json")
        if data is None:
            return None
        where = f"{self.url}/realisations/{rk}.json"
        try:
            if len(data) > records.MAX_BYTES:
                raise records.InvalidRecord("too large")
            doc = json.loads(data.decode("utf-8"))
            if not isinstance(doc, dict):
                raise records.InvalidRecord("not a JSON object")
            sig, signer = _signature(doc, self.trusted)
            if signer is None:
                why = "it is not signed" if sig is None else f"its signature ({str(sig).partition(':')[0][:60]}) " \
                      "is not by a trusted key or does not match"
                warn(f"ignoring remote record {where}: {why} (trusted keys: {', '.join(self.trusted) or 'none'}; "
                     f"add the writer's public key to {ENV_TRUSTED} or trusted-public-keys to use it)")
                return None
            sizes = doc.pop("nar_sizes", None)
            checked = records.check("realisations", rk, doc)
            self._note_sizes(sizes)
            return checked, signer
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            warn(f"ignoring invalid remote record {where}: {str(e)[:200]}")
            return None

    def _record_bytes(self, key: str) -> bytes | None:
        """The remote's `key` (a record), at most one byte past records.MAX_BYTES (so a caller tells a record too
        large), or None if absent. Rejected if it is no file (NotAFile: a FIFO, a device) or states a size no
        record has (nothing of it is read). Raises RemoteDown."""
        stream = self._get(key)
        if stream is None:
            return None
        with contextlib.closing(stream):
            if stream.size is not None and stream.size > records.MAX_BYTES:
                raise Rejected(f"its record {key} is {stream.size} bytes, larger than any record "
                               f"({records.MAX_BYTES} bytes at most)")
            try:
                return stream.read(records.MAX_BYTES + 1)
            except Grew as e:
                raise Rejected(f"its record {key} is not a finished file: {e}") from None

    def _get(self, key: str) -> Stream | None:
        """The backend's stream of `key`, or None if absent; Rejected (naming the key) if what is there is not a
        regular file: it is never read (a FIFO blocked every pull for ever, /dev/zero read without end)."""
        try:
            return self.backend.get(key)
        except NotAFile as e:
            raise Rejected(f"{self.url.split('?')[0]}/{key} is {e}, not a regular file (planted or damaged on the "
                           "remote)") from None
        except UnreadableKey as e:  # (one file of another user's: it took the whole remote down for the run)
            raise Rejected(f"{self.url.split('?')[0]}/{key} cannot be read: {e}") from None

    def _note_sizes(self, sizes: Any) -> None:
        """Remember the NAR sizes a verified record signs (`nar_sizes`), which cap the download of each object
        (fetch_object). Records pushed before sizes were signed have none: their objects are not capped."""
        if sizes is None:
            return
        if not (isinstance(sizes, dict) and all(nar.is_nar_hash(h) and type(n) is int and 0 < n < 1 << 62
                                                for h, n in sizes.items())):
            raise records.InvalidRecord("its nar_sizes is not a map of object names to sizes")
        with self._lock:
            self._sizes.update(sizes)

    def signed(self, doc: dict[str, Any], sizes: dict[str, int] | None = None) -> bytes:
        """The remote form of a record: sealed, plus the NAR size of each object it names (`nar_sizes`, as Nix's
        narinfo signs NarSize), plus `sig` over the canonical JSON of both."""
        if self.secret is None:
            raise NixWorkflowError(f"pushing to {self.url} needs a secret key to sign records: make one with "
                                   f"`nw key generate NAME`, then pass --secret-key-file FILE or set {ENV_SECRET}")
        body = records.seal(doc) | ({"nar_sizes": sizes} if sizes else {})
        return (json.dumps(body | {"sig": self.secret.sign(canonical_json(body).encode())}, sort_keys=True)
                + "\n").encode()

    # ---- substitution -------------------------------------------------------------------

    def substitute(self, store: Store, rk: str) -> dict[str, Any] | None:
        """On a local miss: the realisation of `rk` pulled from the remote and recorded locally, or None
        (absent, not trusted, corrupt, or the remote is down: each warned once, never an error)."""
        if self.down or rk in self._missing or not records.is_name(rk):
            return None
        with self._tolerated(rk):
            return self._substitute(store, rk)
        with self._lock:  # reached only when the remote failed us: do not ask again for this key
            self._missing.add(rk)
        return None

    @contextlib.contextmanager
    def _tolerated(self, rk: str) -> Iterator[None]:
        """A remote that is down or serves something that fails verification costs a warning, never the run:
        the caller goes on as if the remote had nothing for `rk` (it is built locally)."""
        try:
            yield
        except RemoteDown as e:
            self._went_down(e)
        except Rejected as e:
            warn(f"not using {rk} from {self.url}: {e}; it will be built locally")

    def _substitute(self, store: Store, rk: str, locked: bool = False) -> dict[str, Any] | None:
        """Fetch, verify and record `rk`; `locked`: the caller already holds the store's lock of `rk`."""
        found = self.fetch_record(rk)
        if found is None:
            with self._lock:
                self._missing.add(rk)
            return None
        doc, signer = found
        outputs = list(doc["outputs"].values())
        temproots.of(store.root).add([rk, *outputs])  # gc keeps what we are about to add
        with contextlib.nullcontext() if locked else store.lock(rk):
            local = store.realisation(rk)
            if local is not None:
                return local
            for h in outputs:
                self.fetch_object(store, h)
            provenance = dict(doc["provenance"]) | {"substituted": {"from": self.url, "signed_by": signer}}
            with store.gc_guard():
                if all(store.has(h) for h in outputs):
                    store.record_realisation({k: v for k, v in doc.items() if k != "digest"} |
                                             {"provenance": provenance})
                    with self._lock:
                        self.pulled.add(rk)
            return store.realisation(rk)

    # ---- leases (nixlib/remote_lease.py) ------------------------------------------------

    def claim(self, store: Store, rk: str) -> dict[str, Any] | None:
        """Right before building a local miss (the store's lock of `rk` held): if another host holds a live
        lease on `rk`, wait (bounded) for its record and return it substituted; otherwise None — build — after
        taking the lease when this process pushes (so other hosts wait for its result instead of building too)."""
        if self.down or not records.is_name(rk):
            return None
        with self._tolerated(rk):
            return self._claim(store, rk)
        return None

    def _claim(self, store: Store, rk: str) -> dict[str, Any] | None:
        deadline = time.monotonic() + remote_lease.longest_wait()
        told = False
        first = True
        vanished = 0
        while True:
            if not (first and rk in self._missing):  # the lookup just before found no record: skip one GET
                doc = self._substitute(store, rk, locked=True)
                if doc is not None:
                    return doc
            first = False
            if self._take_lease(store, rk, replace=False):
                return None
            if self.leases_refused:
                return None  # (leases/ is a link: what it holds is no lease of the remote's)
            lease, found = remote_lease.inspect(self.backend, rk)
            if lease is None or not remote_lease.live(lease):
                # garbled, or a crashed holder's: take it over (atomically on file:// and on S3 with If-Match)
                if found is not None and self._take_lease(store, rk, replace=True, stale=found):
                    return None
                vanished += 1
                if self._may_lease() and vanished < 3:
                    continue  # released just now, or another host took it over: look again
                return None
            if time.monotonic() >= deadline:
                warn(f"waited {remote_lease.longest_wait():.0f} s for {remote_lease.holder(lease)} to build {rk} "
                     f"(lease on {self.url}, NIX_WORKFLOW_LEASE_WAIT); building it here too")
                return None
            if not told:
                told = True
                print(f"nw: {remote_lease.holder(lease)} is building {rk[:12]}… (lease on {self.url}); waiting "
                      "for its result", file=sys.stderr, flush=True)
            if CHILDREN.stopping.wait(min(remote_lease.poll_interval(), max(deadline - time.monotonic(), 0.0))):
                # (`nw run`'s steps wait in threads, which Ctrl-C does not reach: the stop is this event)
                raise Interrupted(f"interrupted while waiting for {remote_lease.holder(lease)} to build {rk[:12]}…")

    def _unsafe(self, e: UnsafeDirectory) -> str:
        """The one warning (or `nw push` error) for a directory of the remote that a write would go through."""
        return (f"remote {self.url}: {e}; nothing is written through it (planted by someone who can write the "
                "remote?), so no lease or push that needs it is made and steps are built here: replace it with a "
                "directory")

    def _may_lease(self) -> bool:
        """Only a process that will push its result leases: others would make hosts wait for nothing. Nor one
        that found `leases/` unsafe to write through (UnsafeDirectory)."""
        return self.push_enabled and self.secret is not None and not self.leases_refused

    def _take_lease(self, store: Store, rk: str, replace: bool, stale: Any = None) -> bool:
        if not self._may_lease():
            return False
        scratch = store.new_tmp("lease")
        lease = remote_lease.Lease(self.backend, scratch, rk)
        try:
            taken = lease.take(replace, None if stale is remote_lease.PRESENT else stale)
        except UnsafeDirectory as e:  # (leases/ or tmp/ is a link: no lease is written through it, steps are built)
            force_remove(scratch)
            self.leases_refused = True
            warn(self._unsafe(e))
            return False
        except BaseException:
            force_remove(scratch)
            raise
        if not taken:
            force_remove(scratch)
            return False
        with self._lock:
            self._leases[rk] = (lease, scratch)
        return True

    def release(self, rk: str) -> None:
        """Give up this process's lease on `rk` (after pushing its record, or when its build failed)."""
        with self._lock:
            held = self._leases.pop(rk, None)
        if held is not None:
            held[0].release()
            force_remove(held[1])

    def fetch_object(self, store: Store, h: str) -> None:
        """Download object `h` into the store unless it is there; Rejected if it does not hash to its name
        (then nothing is stored), RemoteDown if it cannot be fetched, Rejected if the remote lacks it."""
        if store.has(h):
            return
        stream, key = self._open_object(h)
        scratch = store.new_tmp("pull")
        transfer = Transfer("pulling", f"{self.url.split('?')[0]}/{key}", stream.size)

        def on_read(n: int) -> None:
            transfer.add(n)  # progress on a terminal, for large objects
            faults.point("remote-object-read")  # (tests: a pull killed with part of an object read)

        stream.on_read = on_read
        ok = False
        try:
            with contextlib.closing(stream):
                staged = scratch / "object"
                try:
                    got = narread.restore(_capped(_reader(stream, key.endswith(".xz")), self._sizes.get(h), key),
                                          staged)
                except (narread.NarError, lzma.LZMAError) as e:
                    self._reject_object(h)
                    raise Rejected(f"object {key} is not a valid archive ({str(e)[:200]})") from None
                except Rejected:
                    self._reject_object(h)
                    raise
                except Grew as e:
                    self._reject_object(h)
                    raise Rejected(f"object {key} is not a finished file: {e}") from None
                except RemoteDown:
                    raise  # reading the remote failed (Stream.read): not this store's disk
                except OSError as e:
                    raise NixWorkflowError(f"cannot unpack {key} into {scratch}: {e.strerror or e}") from None
                except Exception as e:  # noqa: BLE001 - the client library's transfer errors: the remote failed us
                    raise RemoteDown(f"downloading {key}: {str(e)[:200]}") from None
            if got != h:
                self._reject_object(h)
                raise Rejected(f"object {key} hashes to {got}, not to its name (corrupt on the remote)")
            with store.gc_guard():
                stored = store.ingest(staged, move=True)
            if stored != h:  # cannot happen with a canonical archive; never serve it under the wrong name
                raise Rejected(f"object {key} unpacked to {stored}, not to its name")
            ok = True
        finally:
            transfer.finish(ok)
            force_remove(scratch)

    def _object_keys(self, h: str) -> list[str]:
        """Where object `h` may be on the remote: packed as this remote packs, or as another writer did."""
        return [f"nar/{h}{suffix}" for suffix in dict.fromkeys((self.suffix, ".nar.xz", ".nar"))]

    def has_object(self, h: str) -> bool:
        """Whether the remote holds object `h` (nothing is downloaded; RemoteDown if it cannot be asked)."""
        return any(self.backend.exists(key) for key in self._object_keys(h))

    def _open_object(self, h: str) -> tuple[Stream, str]:
        for key in self._object_keys(h):
            try:
                stream = self._get(key)
            except Rejected:
                self._reject_object(h)  # a push replaces it with the good copy
                raise
            if stream is not None:
                return stream, key
        raise Rejected(f"its object {h} is missing from the remote")

    def _reject_object(self, h: str) -> None:
        with self._lock:
            self._bad_objects.add(h)  # a push may replace it with a good copy (objects are content-addressed)

    # ---- push ---------------------------------------------------------------------------

    def after_build(self, store: Store, doc: dict[str, Any]) -> None:
        """Push a fresh realisation if pushing is on; a failure is a warning (the run has already succeeded)."""
        try:
            if not self.push_enabled or self.down:
                return
            try:
                self.push(store, doc)
            except RemoteDown as e:
                self._went_down(e)
            except UnsafeRemote as e:
                warn(str(e))  # (as the lease's: one warning per run)
            except NixWorkflowError as e:
                warn(f"not pushing to {self.url}: {e}")
        finally:
            self.release(doc["resolved_key"])  # after the record: a waiting host then finds it

    def push(self, store: Store, doc: dict[str, Any]) -> bool:
        """Upload a realisation's objects, then its signed record (last, so a record never names a missing
        object). False if the remote already had a record of this key (first writer wins)."""
        body = self.signed(doc, _sizes(store, doc))
        for h in doc["outputs"].values():
            self.push_object(store, h)
        faults.point("remote-objects-pushed")
        key = f"realisations/{doc['resolved_key']}.json"
        if self._put_bytes(store, key, body):
            return True
        if not self._forged_record(key):
            return False  # first writer wins
        # A record that is no record, unsigned, or signed in a known key's name but not by it (planted or damaged
        # by someone who can write the remote, but holds no key): it blocked every push of this key, which said
        # "already there", while every host ignored it and built the step again. A good record replaces it, as a
        # good copy of an object replaces a corrupt one.
        return self._put_bytes(store, key, body, replace=True)

    def _forged_record(self, key: str) -> bool:
        """True if the remote's `key` is not a record any key holder signed: not a JSON object, no signature, or a
        signature in the name of this host's key or a trusted key that does not verify under it. A record signed
        by a key this host does not know is left alone (hosts that trust that key use it)."""
        try:
            data = self._record_bytes(key)
        except Rejected:  # a FIFO, a device, a giant: no record; a good one replaces it (if it can)
            return True
        if data is None:
            return False
        try:
            doc = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return True
        if not isinstance(doc, dict) or not isinstance(doc.get("sig"), str):
            return True
        known = self._known_keys()
        sig, signer = _signature(doc, known)
        return sig.partition(":")[0] in known and signer is None

    def _known_keys(self) -> dict[str, list[Ed25519PublicKey]]:
        """The keys whose holders this host knows: the trusted ones and, when it has a secret key, its own. A record
        signed in one of their names that does not verify under it was signed by no key holder (_forged_record);
        substitution believes only the trusted ones (fetch_record)."""
        known = {name: list(keys) for name, keys in self.trusted.items()}
        if self.secret is not None:
            known.setdefault(self.secret.name, []).append(self.secret.key.public_key())
        return known

    def push_object(self, store: Store, h: str) -> bool:
        """Upload object `h` as a compressed NAR unless the remote has it (a copy that failed its hash here
        is replaced). Compressed to a temp file first, so memory stays bounded and the upload is one atomic
        put (multipart for large objects)."""
        key = f"nar/{h}{self.suffix}"
        repair = h in self._bad_objects
        if not repair and self.backend.exists(key):
            return False
        if not store.has(h):
            from nixlib.plan import quarantined  # a corrupt copy was moved aside: say so, not "removed by gc?"

            moved = quarantined(store, h)
            why = f"it was quarantined as corrupt (moved to {moved[-1]})" if moved else "removed by `nw gc`?"
            raise NixWorkflowError(f"object {h} is not in the store at {store.root} ({why}); run the step again to "
                                   "push it")
        scratch = store.new_tmp("push")
        try:
            packed = scratch / "nar"
            self._pack(store, h, packed)
            transfer = Transfer("pushing", f"{self.url.split('?')[0]}/{key}", packed.stat().st_size)
            sent = False
            try:
                done = self._put(str(packed), key, repair, transfer.add)
                sent = True
            finally:
                transfer.finish(sent)
        finally:
            force_remove(scratch)
        if repair:
            with self._lock:
                self._bad_objects.discard(h)
        return done

    def _pack(self, store: Store, h: str, packed: Path) -> None:
        """Write object `h`'s NAR (compressed unless `none`) to `packed`, hashing the very bytes written: an
        object that does not hash to its name as it is read now (changed or removed behind the store's stat
        memo, e.g. by `nw gc` or a stale memo entry) is never uploaded under that name, where it would stand
        in for the good copy (first writer wins) and make every host that pulls it reject it and rebuild."""
        sha = hashlib.sha256()
        comp = lzma.LZMACompressor(preset=_XZ_PRESET) if self.suffix == ".nar.xz" else None
        try:
            with open(packed, "wb") as f:
                def sink(b: bytes) -> None:
                    sha.update(b)
                    f.write(comp.compress(b) if comp is not None else b)

                nar.dump(store.object_path(h), sink)
                if comp is not None:
                    f.write(comp.flush())
        except FileNotFoundError:
            raise NixWorkflowError(f"object {h} was removed from the store at {store.root} while it was pushed "
                                   "(by `nw gc`?); run the step again to push it") from None
        if base32.encode(sha.digest()) != h:
            where = store.quarantine(h)
            raise NixWorkflowError(f"object {h} in the store at {store.root} does not hash to its name (changed "
                                   "after it was stored); it was not pushed"
                                   + (f" and was moved to {where}" if where else "")
                                   + ": run the step again to push it")

    def _put_bytes(self, store: Store, key: str, data: bytes, replace: bool = False) -> bool:
        scratch = store.new_tmp("push")
        try:
            (scratch / "record").write_bytes(data)
            return self._put(str(scratch / "record"), key, replace)
        finally:
            force_remove(scratch)

    def _put(self, path: str, key: str, replace: bool, progress: Progress | None = None) -> bool:
        """backend.put; False, with a warning naming the key, where a replacement (of a record or object that is
        no file) finds a directory there: the push of that one key fails, the remote stays in use (it was taken
        for down, so the rest of the run neither substituted nor pushed anything). A directory of the remote that
        is a symbolic link (UnsafeDirectory) is a NixWorkflowError naming it: this push stops (its record is not
        pushed, as it would name an object the remote lacks), `nw run` warns and goes on, `nw push` fails."""
        try:
            return self.backend.put(path, key, replace=replace, progress=progress)
        except NotAFile as e:
            warn(f"not pushing {self.url.split('?')[0]}/{key}: the remote holds {e} under that name (planted or "
                 "damaged); remove it there to push this result")
            return False
        except UnsafeDirectory as e:  # (after_build warns once per directory, and the record is not pushed)
            raise UnsafeRemote(self._unsafe(e)) from None

    # ---- closures (nw push / nw pull) ---------------------------------------------------

    def push_closure(self, store: Store, doc: dict[str, Any],
                     seen: set[str] | None = None) -> Iterator[tuple[str, str, bool]]:
        """Push a realisation and its whole lineage (upstream realisations, static input objects); yields
        (name, key, pushed) per realisation not in `seen` (which collects them: a step in the lineage of several
        pushed steps was pushed, then reported "already there" as if another host had pushed it). Its key is a
        temp root first, so a concurrent `nw gc` keeps what is being pushed (the record, its outputs and their
        upstream)."""
        temproots.of(store.root).add([doc["resolved_key"]])
        seen = set() if seen is None else seen
        for d in lineage_records(store, doc):
            if d["resolved_key"] in seen:
                continue
            seen.add(d["resolved_key"])
            for i in d["inputs"]:
                if i.get("resolved_key") is None and store.has(i["object"]):
                    self.push_object(store, i["object"])
            yield d["name"], d["resolved_key"], self.push(store, d)

    def pull_closure(self, store: Store, rk: str) -> Iterator[tuple[str, str, str]]:
        """Pull a realisation and its lineage from the remote; yields (name, key, "pulled"/"here"/why not)."""
        seen: set[str] = set()
        todo = [rk]
        while todo:
            key = todo.pop()
            if key in seen:
                continue
            seen.add(key)
            doc = store.realisation(key)
            status = "here"
            if doc is None:
                doc = self._pull_one(store, key)
                status = "pulled" if doc is not None else "not on the remote (or not trusted: see warnings)"
            yield (doc or {}).get("name", "?"), key, status
            for i in (doc or {}).get("inputs", []):
                if i.get("resolved_key"):
                    todo.append(i["resolved_key"])
                else:
                    try:
                        self.fetch_object(store, i["object"])
                    except Rejected:
                        pass
                    except RemoteDown as e:
                        self._went_down(e)
                        return

    def _pull_one(self, store: Store, rk: str) -> dict[str, Any] | None:
        """`rk` pulled, or None (warned). A remote that fails us marks it down, for `nw pull` to report as one
        clear error (RemoteDown came out of `nw pull KEY` as an internal error with a traceback)."""
        try:
            return self._substitute(store, rk)
        except Rejected as e:
            warn(f"not using {rk} from {self.url}: {e}")
        except RemoteDown as e:
            self._went_down(e)
        return None


def lineage_records(store: Store, doc: dict[str, Any]) -> list[dict[str, Any]]:
    """A realisation and every upstream realisation it used, upstream first (each once)."""
    out: dict[str, dict[str, Any]] = {}

    def visit(d: dict[str, Any]) -> None:
        if d["resolved_key"] in out:
            return
        for i in d["inputs"]:
            rk = i.get("resolved_key")
            up = store.read_record("realisations", rk) if rk else None
            if up is not None:
                visit(up)
        out[d["resolved_key"]] = d

    visit(doc)
    return list(out.values())


def _sizes(store: Store, doc: dict[str, Any]) -> dict[str, int]:
    """The NAR size of each object a record names (its outputs, its static inputs) that this store holds."""
    named = [*doc["outputs"].values(), *(i["object"] for i in doc["inputs"] if not i.get("resolved_key"))]
    sizes = {}
    for h in named:
        with contextlib.suppress(OSError):  # (missing: push_object says so, with the reason)
            sizes[h] = nar.nar_size(store.object_path(h))
    return sizes


def _capped(read: narread.Read, limit: int | None, key: str) -> narread.Read:
    """`read`, refusing to deliver more than the `limit` bytes the record signs for the object: an object
    replaced on the remote by a larger (or endlessly compressed) stream is stopped there, before it fills the
    disk it is unpacked to, instead of being rejected by its hash only after it was written out whole."""
    if limit is None:
        return read
    given = 0

    def capped(n: int) -> bytes:
        nonlocal given
        data = read(n)
        given += len(data)
        if given > limit:
            raise Rejected(f"object {key} is larger than the {limit} bytes its signed record names (replaced "
                           "on the remote?)")
        return data

    return capped


def _reader(stream: Stream, xz: bool) -> narread.Read:
    """A read(n) over a (possibly xz-compressed) stream. Decompression is capped per call, so a small
    compressed chunk that expands enormously never sits in memory whole."""
    if not xz:
        return stream.read
    buf = bytearray()
    unxz = lzma.LZMADecompressor()

    def read(n: int) -> bytes:
        while len(buf) < n and not unxz.eof:
            if unxz.needs_input:
                chunk = stream.read(_CHUNK)
                if not chunk:
                    break
                buf.extend(unxz.decompress(chunk, max_length=_CHUNK))
            else:
                buf.extend(unxz.decompress(b"", max_length=_CHUNK))
        out = bytes(buf[:n])
        del buf[:n]
        return out

    return read


_CACHE: dict[tuple[str, ...], Remote | None] = {}
_CACHE_LOCK = threading.Lock()


def settings() -> tuple[str, ...]:
    return tuple(os.environ.get(v, "") for v in (ENV_URL, ENV_TRUSTED, ENV_SECRET, ENV_PUSH, ENV_COMPRESSION))


def configured() -> Remote | None:
    """The remote this process's environment configures (memoised per setting), or None."""
    key = settings()
    if not key[0]:
        return None
    with _CACHE_LOCK:
        if key not in _CACHE:
            url, trusted, secret, push, compression = key
            from nixlib.config import push_on  # (once per setting)

            _CACHE[key] = Remote(url, trusted, secret or None, push_on(push), compression or "xz")
        remote = _CACHE[key]
    if remote is not None and not remote.trusted:
        warn(f"remote {remote.url} is configured but no trusted public keys are ({ENV_TRUSTED} or "
             "trusted-public-keys): nothing will be substituted from it")
    return remote


def apply_settings(url: str | None = None, trusted: list[str] | None = None, secret_key_file: str | None = None,
                   push: bool | None = None, override: bool = False) -> None:
    """Set the environment variables that configure the remote (command line: override; config: defaults only),
    so every front door and child process of this run sees one configuration."""
    values = {ENV_URL: url, ENV_TRUSTED: " ".join(trusted) if trusted else None, ENV_SECRET: secret_key_file,
              ENV_PUSH: None if push is None else ("1" if push else "0")}
    for name, value in values.items():
        if value is not None and (override or not os.environ.get(name)):
            os.environ[name] = value


def resolve_key_file(path: str | os.PathLike) -> str:
    return str(Path(path).expanduser().absolute())
