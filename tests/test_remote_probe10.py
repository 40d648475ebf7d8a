"""Remote cache probe (wave 10): trust and failure modes of remotes, through the real `nw` CLI on file:// remotes
(two "hosts": separate stores and working directories sharing only the remote directory)."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import pytest

from tests.helpers import bound, nw
from tests.test_remote import Host, Remote, experiment, keys, ran  # noqa: F401 - fixture used here


def pushed_remote(tmp_path: Path, keys: dict[str, str]) -> tuple[Remote, Path, Path]:  # noqa: F811
    """A file:// remote holding both steps of test_remote's experiment, pushed by host A (signed by k1)."""
    remote = Remote("file", tmp_path, None)
    exp, count = experiment(tmp_path)
    Host(tmp_path, "a", remote, keys["k1.pub"]).run(exp, "--push", "--secret-key-file", keys["k1"])
    assert ran(count) == ["data", "model"]
    return remote, exp, count


def test_a_remote_file_that_fails_mid_read_is_a_warning_not_a_failed_run(tmp_path: Path,
                                                                          keys: dict[str, str]) -> None:  # noqa: F811
    """A share that fails while a file is read (EIO, ESTALE: an NFS server gone mid-transfer) failed `nw run` with
    "cannot unpack … Input/output error" (an object) or a raw "Input/output error (in read…)" (a record), though a
    remote that fails us must cost one warning, the steps then running locally. /proc/self/mem opens but fails
    every read at offset 0 with EIO: a real read error on a real file (bind-mounted over each key: reads of a
    file:// remote follow no link)."""
    remote, exp, count = pushed_remote(tmp_path, keys)
    for kind in ("nar", "realisations"):
        with contextlib.ExitStack() as mounts:
            for p in list((remote.dir / kind).iterdir()):
                mounts.enter_context(bound(f"/proc/{os.getpid()}/mem", p))
            pulled = Host(tmp_path, f"c-{kind}", remote, keys["k1.pub"]).nw("pull", str(exp), "--remote", remote.url)
            assert pulled.returncode == 1 and "unavailable" in pulled.stderr and "Traceback" not in pulled.stderr
            b = Host(tmp_path, f"b-{kind}", remote, keys["k1.pub"])
            result = b.run(exp, check=False)
        assert result.returncode == 0, result.stderr
        assert result.stderr.count("is unavailable") == 1 and "Input/output error" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
        assert len(ran(count)) == (4 if kind == "nar" else 6)  # built locally


def forge_memo(store: Path, obj: Path) -> None:
    """Make the store's stat memo vouch for `obj` as it is now under its old hash (what a stale memo entry
    does: the memo is believed without re-hashing), so only a check of the pushed bytes can catch it."""
    from nixlib.statmemo import scan

    (entry,) = [p for p in (store / "cache").rglob("*.json")
                if p.read_bytes().count(str(obj).encode()) and json.loads(p.read_text()).get("path") == str(obj)]
    doc = json.loads(entry.read_text())
    entry.write_text(json.dumps(doc | {"signature": scan(obj).signature}, sort_keys=True))


def test_an_object_that_no_longer_hashes_to_its_name_is_never_pushed(tmp_path: Path,
                                                                      keys: dict[str, str]) -> None:  # noqa: F811
    """`nw push` uploaded whatever bytes the object held under its name once the stat memo vouched for it (a
    stale entry, or `nw gc` removing it mid-dump): the remote then kept the bad copy (first writer wins) and
    every host that pulled it rejected it and rebuilt. The pushed bytes are now hashed as they are packed."""
    remote = Remote("file", tmp_path, None)
    exp, count = experiment(tmp_path)
    a = Host(tmp_path, "a", remote, keys["k1.pub"])
    a.run(exp, step="data")
    (h,) = a.objects()
    obj = a.store / "store" / h
    os.chmod(obj, 0o755)
    os.chmod(obj / "x", 0o644)
    (obj / "x").write_text("tampered\n")
    os.chmod(obj / "x", 0o444)
    os.chmod(obj, 0o555)
    forge_memo(a.store, obj)
    pushed = a.nw("push", "data", "--remote", remote.url, "--secret-key-file", keys["k1"])
    assert pushed.returncode == 1 and f"object {h}" in pushed.stderr and "does not hash" in pushed.stderr, pushed
    assert "Traceback" not in pushed.stderr
    assert [k for k in remote.keys() if not k.startswith("leases/")] == []  # no object, no record
    assert not obj.exists() and len(list((a.store / "quarantine").iterdir())) == 1  # never served again
    again = a.nw("push", "data", "--remote", remote.url, "--secret-key-file", keys["k1"])  # (said "removed by gc?")
    assert again.returncode == 1 and "quarantined as corrupt" in again.stderr, again.stderr
    assert ran(count) == ["data"]


def test_a_damaged_secret_key_file_is_named_but_its_content_never_shown(tmp_path: Path,
                                                                         keys: dict[str, str]) -> None:  # noqa: F811
    """The error for a secret key file not in Nix's format quoted its first 40 characters: for a key with one
    character lost (or a stray one added), that is 27 bytes of the 32-byte seed, printed into CI logs."""
    secret = Path(keys["k1"]).read_text().strip()
    damaged = tmp_path / "damaged.sec"
    damaged.write_text(secret[:-3] + "\n")  # (base64 that no longer decodes to 64 bytes)
    exp, count = experiment(tmp_path)
    remote = Remote("file", tmp_path, None)
    a = Host(tmp_path, "a", remote, keys["k1.pub"])
    for run in (a.run(exp, "--push", "--secret-key-file", str(damaged), check=False),
                a.nw("push", "data", "--remote", remote.url, "--secret-key-file", str(damaged)),
                a.nw("key", "public", str(damaged))):
        assert run.returncode == 1 and str(damaged) in run.stderr and "Nix's key format" in run.stderr, run.stderr
        assert secret.partition(":")[2][:8] not in run.stderr + run.stdout and "Traceback" not in run.stderr
    assert ran(count) == [] and not a.store.exists() and remote.keys() == []


def test_trusted_public_keys_errors_name_the_setting_and_a_reused_name_trusts_both(
        tmp_path: Path, keys: dict[str, str]) -> None:  # noqa: F811
    """Garbage in the trusted keys was an error that named no setting (they travel as NIX_WORKFLOW_TRUSTED_KEYS
    from the command line, nixworkflow.yaml, Snakemake's or Luigi's settings). Two keys listed under one name (a
    key regenerated under its old name, both listed): the later silently replaced the earlier, so records
    signed with the earlier were ignored as "not by a trusted key"."""
    remote, exp, count = pushed_remote(tmp_path, keys)  # signed by k1
    garbage = Host(tmp_path, "g", remote, f"{keys['k1.pub']}, not-a-key").run(exp, check=False)
    assert garbage.returncode == 1 and "'not-a-key'" in garbage.stderr and "NIX_WORKFLOW_TRUSTED_KEYS" in garbage.stderr
    assert "Traceback" not in garbage.stderr and ran(count) == ["data", "model"]
    other = keys["k2.pub"].replace("k2:", "k1:")  # another key under the same name
    b = Host(tmp_path, "b", remote, f"{keys['k1.pub']}\n {keys['k1.pub']} ,{other}")
    result = b.run(exp)
    assert ran(count) == ["data", "model"], result.stderr  # substituted, nothing ran
    assert '"signed_by": "k1"' in b.nw("show", "model", check=True).stdout


def test_a_lease_left_by_a_killed_run_on_this_host_is_taken_over_at_once(tmp_path: Path,
                                                                          keys: dict[str, str]) -> None:  # noqa: F811
    """A `nw run --push` killed while it built left its lease, and the next run on the same host waited for the
    dead process until the lease expired (5 minutes by default). A lease of this host and boot whose process is
    gone is now taken over; one of another boot (another machine or container with this host name) is waited for."""
    remote = Remote("file", tmp_path, None)
    exp, count = experiment(tmp_path)
    a = Host(tmp_path, "a", remote, keys["k1.pub"])
    push = ("--push", "--secret-key-file", keys["k1"])
    killed = a.run(exp, *push, step="data", check=False, env={"NIX_WORKFLOW_FAULT": "step-ran"})
    assert killed.returncode == -9 and ran(count) == ["data"]
    (lease,) = (remote.dir / "leases").iterdir()
    left = lease.read_text()
    lease.chmod(0o644)

    # the same dead pid on a host of this name but another boot: not provably dead here, so waited for
    lease.write_text(json.dumps(json.loads(left) | {"boot": "another-boot"}))
    waited = Host(tmp_path, "c", remote, keys["k1.pub"]).run(exp, step="data", env={  # (c does not push)
        "NIX_WORKFLOW_LEASE_WAIT": "0.3", "NIX_WORKFLOW_LEASE_POLL": "0.1"})
    assert "is building" in waited.stderr and "waited" in waited.stderr, waited.stderr
    assert ran(count) == ["data", "data"]

    # a lease that never expires (leases are unsigned: anyone who can write leases/ could plant one) is garbled
    lease.write_text(json.dumps(json.loads(left) | {"boot": "another-boot", "expires": float("inf")}))
    never = Host(tmp_path, "d", remote, keys["k1.pub"]).run(exp, step="data", env={"NIX_WORKFLOW_LEASE_WAIT": "5"})
    assert "is building" not in never.stderr and ran(count) == ["data"] * 3, never.stderr

    lease.write_text(left)
    again = a.run(exp, *push, step="data", env={"NIX_WORKFLOW_LEASE_WAIT": "5"})
    assert "is building" not in again.stderr and "waited" not in again.stderr, again.stderr
    assert ran(count) == ["data"] * 4 and len(list((remote.dir / "realisations").iterdir())) == 1
    assert list((remote.dir / "leases").iterdir()) == []  # taken over, then released once pushed


def test_push_and_pull_report_each_step_once_and_truly(tmp_path: Path, keys: dict[str, str]) -> None:  # noqa: F811
    """`nw push` (every step of the last run) pushed `data`, then reported it "already there" as model's upstream
    (counted as found on the remote); a second `nw pull FILE` said "pulled" for steps already in the store
    (any record substituted some day counted as pulled now)."""
    remote = Remote("file", tmp_path, None)
    exp, count = experiment(tmp_path)
    a, b = Host(tmp_path, "a", remote, keys["k1.pub"]), Host(tmp_path, "b", remote, keys["k1.pub"])
    a.nw("run", str(exp), "-q", check=True)
    pushed = a.nw("push", "--remote", remote.url, "--secret-key-file", keys["k1"], check=True)
    assert sorted(pushed.stdout.split()[::3]) == ["pushed:", "pushed:"], pushed.stdout
    assert "2 realisation(s) pushed" in pushed.stderr and "0 already there" in pushed.stderr
    first = b.nw("pull", str(exp), "--remote", remote.url, check=True)
    assert first.stdout.count("pulled:") == 2, first.stdout
    second = b.nw("pull", str(exp), "--remote", remote.url, check=True)
    assert second.stdout.count("here:") == 2 and "pulled" not in second.stdout, second.stdout
    assert ran(count) == ["data", "model"]


def test_key_generate_that_cannot_write_the_public_key_leaves_no_secret_behind(tmp_path: Path) -> None:
    """The secret key was written first and kept when the public key could not be: an orphan secret key, and
    the retry refused with "kk.sec exists: nw key generate never overwrites a key"."""
    d = tmp_path / "keys"
    d.mkdir()
    failed = nw("key", "generate", "kk", "--public-key-file", str(d / "missing-dir" / "kk.pub"), cwd=d)
    assert failed.returncode == 1 and "missing-dir/kk.pub" in failed.stderr and "Traceback" not in failed.stderr
    assert list(d.iterdir()) == []
    nw("key", "generate", "kk", cwd=d, check=True)
    assert sorted(p.name for p in d.iterdir()) == ["kk.pub", "kk.sec"]


@pytest.mark.parametrize(("url", "says"), [
    ("s3://b/p?endpoint=http://127.0.0.1:1&endpoint=http://127.0.0.1:2", "'endpoint' is given 2 times"),
    ("s3://b/p#endpoint=http://127.0.0.1:1", "no '#' part"),
    ("file:///tmp/cache?compression=none", "no settings after '?'"),
    ("file:relative/cache", "an absolute path"),
])
def test_remote_url_parts_that_were_silently_dropped_are_errors(tmp_path: Path, url: str, says: str) -> None:
    """A repeated s3:// setting used the last silently (two endpoints, one ignored); `#…` and a file:// URL's
    `?…` were dropped; `file:DIR` named a directory relative to whatever directory each process ran in."""
    exp = tmp_path / "exp.py"
    exp.write_text(f"from nixlib import output\na = output('echo x > $out/x; touch {tmp_path}/ran')\n")
    proc = nw("run", str(exp), "--remote", url, env={"NIX_WORKFLOW_STORE": str(tmp_path / "store")})
    assert proc.returncode == 1 and says in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "ran").exists() and not (tmp_path / "store").exists()


def test_pull_of_a_key_the_remote_does_not_have_fails(tmp_path: Path, keys: dict[str, str]) -> None:  # noqa: F811
    """`nw pull KEY` for a key not on the remote printed "not on the remote" and exited 0, so a script that pulls
    a model before using it went on without it (`nix copy --from` fails for a missing path)."""
    remote, exp, _ = pushed_remote(tmp_path, keys)
    b = Host(tmp_path, "b", remote, keys["k1.pub"])
    absent = "0" * 52
    proc = b.nw("pull", absent, "--remote", remote.url)
    assert proc.returncode == 1 and "not on the remote" in proc.stdout and absent in proc.stdout, proc.stdout
    assert b.nw("pull", str(exp), "--remote", remote.url).returncode == 0  # an experiment: what is there
