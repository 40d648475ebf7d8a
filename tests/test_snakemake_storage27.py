"""Snakemake storage plugins (`snakemake-storage-plugin-fs`, `-s3`) with `--executor nixworkflow`.

A job's storage inputs are keyed by the content of their local copies in `.snakemake/storage/`. The restoring
pass before the scheduler keyed a copy kept from an earlier run (`--keep-storage-local-copies`) without
retrieving the newer object first, as Snakemake's scheduler does before it runs a job: a changed remote input
restored (and uploaded) the result of its old bytes. A restored job still uploads its outputs to storage."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_remote import CREDS, s3_endpoint  # noqa: F401 - s3_endpoint: the module's SeaweedFS server

# Three rules; each appends its name to $NW_TEST_LOG when it really runs.
SNAKEFILE = """
rule all:
    input: "c.txt"

rule a:
    input: "raw.txt"
    output: "a.txt"
    shell: "echo a >> $NW_TEST_LOG; tr a-z A-Z < {input} > {output}"

rule b:
    input: "a.txt"
    output: "b.txt"
    shell: "echo b >> $NW_TEST_LOG; cat {input} {input} > {output}"

rule c:
    input: "b.txt"
    output: "c.txt"
    shell: "echo c >> $NW_TEST_LOG; wc -c < {input} | tr -d ' ' > {output}; cat {input} >> {output}"
"""
OUTPUTS = ("a.txt", "b.txt", "c.txt")


def snakemake(wd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`snakemake -c1 --executor nixworkflow ARGS` in `wd`; fails the test with its output if it fails."""
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-c1", "--executor", "nixworkflow", *args],
                          cwd=wd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def expected(raw: str) -> dict[str, bytes]:
    """The three outputs for the input `raw` (lower-case ASCII), as the rules above write them."""
    a = raw.upper()
    return {"a.txt": a.encode(), "b.txt": (a + a).encode(), "c.txt": f"{2 * len(a)}\n{a}{a}".encode()}


def ran(log: Path) -> list[str]:
    lines = log.read_text().split() if log.exists() else []
    log.unlink(missing_ok=True)
    return lines


def workdir(tmp_path: Path) -> Path:
    wd = tmp_path / "wf"
    wd.mkdir()
    (wd / "Snakefile").write_text(SNAKEFILE)
    return wd


def test_fs_storage_changed_input_with_a_kept_local_copy_reruns_and_restores_upload(tmp_path: Path,
                                                                                     log: Path) -> None:
    wd, remote = workdir(tmp_path), tmp_path / "remote"
    remote.mkdir()
    (remote / "raw.txt").write_text("hello\n")
    args = ("--default-storage-provider", "fs", "--default-storage-prefix", str(remote), "--keep-storage-local-copies")
    snakemake(wd, *args)
    assert ran(log) == ["a", "b", "c"]
    assert {f: (remote / f).read_bytes() for f in OUTPUTS} == expected("hello\n")

    # New bytes in storage, outputs gone there: the kept local copy of raw.txt is stale (older than the object).
    kept = wd / ".snakemake" / "storage" / "fs" / str(remote).lstrip("/") / "raw.txt"
    assert kept.read_text() == "hello\n"
    os.utime(kept, (time.time() - 3600, time.time() - 3600))
    (remote / "raw.txt").write_text("bye\n")
    for f in OUTPUTS:
        (remote / f).unlink()
    snakemake(wd, *args)
    assert ran(log) == ["a", "b", "c"]
    assert {f: (remote / f).read_bytes() for f in OUTPUTS} == expected("bye\n")

    # Remote outputs and every local copy deleted: all three are restored from the store and uploaded again.
    for f in OUTPUTS:
        (remote / f).unlink()
    subprocess.run(["rm", "-rf", str(wd / ".snakemake" / "storage")], check=True)
    proc = snakemake(wd, *args)
    assert ran(log) == []
    assert proc.stderr.count("restored the outputs of rule") == 3
    assert {f: (remote / f).read_bytes() for f in OUTPUTS} == expected("bye\n")


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_s3_default_storage_restores_upload_and_changed_objects_rerun(tmp_path: Path, log: Path,
                                                                      s3_endpoint: str) -> None:  # noqa: F811
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id=CREDS["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=CREDS["AWS_SECRET_ACCESS_KEY"], region_name=CREDS["AWS_DEFAULT_REGION"])
    bucket, prefix = "nw-storage27", tmp_path.name  # one bucket (SeaweedFS's volume limit), a prefix per test
    if "Buckets" not in s3.list_buckets() or bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket=bucket)

    def objects() -> dict[str, bytes]:
        return {f: s3.get_object(Bucket=bucket, Key=f"{prefix}/{f}")["Body"].read() for f in OUTPUTS
                if s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/{f}").get("KeyCount")}

    def delete_outputs() -> None:
        for f in OUTPUTS:
            s3.delete_object(Bucket=bucket, Key=f"{prefix}/{f}")

    wd = workdir(tmp_path)
    s3.put_object(Bucket=bucket, Key=f"{prefix}/raw.txt", Body=b"hello\n")
    args = ("--default-storage-provider", "s3", "--default-storage-prefix", f"s3://{bucket}/{prefix}",
            "--storage-s3-endpoint-url", s3_endpoint, "--storage-s3-access-key", CREDS["AWS_ACCESS_KEY_ID"],
            "--storage-s3-secret-key", CREDS["AWS_SECRET_ACCESS_KEY"])
    snakemake(wd, *args)
    assert ran(log) == ["a", "b", "c"]
    assert objects() == expected("hello\n")
    snakemake(wd, *args)
    assert ran(log) == []

    delete_outputs()  # restored from the store, and uploaded as a job that ran is
    subprocess.run(["rm", "-rf", str(wd / ".snakemake" / "storage")], check=True)
    proc = snakemake(wd, *args)
    assert ran(log) == []
    assert proc.stderr.count("restored the outputs of rule") == 3
    assert objects() == expected("hello\n")

    time.sleep(1.1)
    s3.put_object(Bucket=bucket, Key=f"{prefix}/raw.txt", Body=b"bye\n")  # new bytes: every consumer runs
    snakemake(wd, *args)
    assert ran(log) == ["a", "b", "c"]
    assert objects() == expected("bye\n")

    # A local copy kept from the last run is stale once the object changes: it is retrieved before keying.
    snakemake(wd, *args, "--keep-storage-local-copies", "--forceall")
    ran(log)
    time.sleep(1.1)
    s3.put_object(Bucket=bucket, Key=f"{prefix}/raw.txt", Body=b"hello\n")
    delete_outputs()
    proc = snakemake(wd, *args, "--keep-storage-local-copies")
    assert ran(log) == []  # hello's results are in the store
    assert proc.stderr.count("restored the outputs of rule") == 3
    assert objects() == expected("hello\n")
    assert os.path.exists(wd / ".snakemake" / "storage" / "s3" / bucket / prefix / "a.txt")


UNRETRIEVED = """
storage:
    provider="fs",

rule all:
    input: "out.txt"

rule a:
    input: storage.fs("REMOTE/raw.txt", retrieve=False)
    output: "out.txt"
    shell: "echo a >> $NW_TEST_LOG; cat REMOTE/raw.txt > {output}"
"""


def test_fs_storage_input_not_retrieved_runs_unstored_without_traceback(tmp_path: Path, log: Path,
                                                                         isolated: Path) -> None:
    """`retrieve=False`: the job reads the object itself, so its bytes are never here to key. It failed with a
    FileNotFoundError traceback (the key hashed a local copy that is never made); it runs as with the local
    executor, and nothing of it is stored."""
    wd, remote = tmp_path / "wf", tmp_path / "remote"
    wd.mkdir()
    remote.mkdir()
    (remote / "raw.txt").write_text("one\n")
    (wd / "Snakefile").write_text(UNRETRIEVED.replace("REMOTE", str(remote)))
    proc = snakemake(wd)
    assert ran(log) == ["a"]
    assert (wd / "out.txt").read_text() == "one\n"
    assert "retrieve=False" in proc.stderr
    assert not list((isolated / "realisations").glob("*.json"))


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_fs_storage_outputs_restored_in_link_modes_upload_as_the_local_executor_does(tmp_path: Path,
                                                                                      log: Path) -> None:
    """Under `--nixworkflow-link-mode symlink|hardlink`, a storage output's local copy was a link into the store:
    the fs plugin's rsync uploaded the store file's read-only mode and (symlink) its old mtime, older than the
    input, so every later run ran (restored) the jobs again. Storage outputs are restored as copies."""
    wd, remote = workdir(tmp_path), tmp_path / "remote"
    remote.mkdir()
    (remote / "raw.txt").write_text("hello\n")
    args = ("--default-storage-provider", "fs", "--default-storage-prefix", str(remote))
    snakemake(wd, *args)
    assert ran(log) == ["a", "b", "c"]
    for mode in ("symlink", "hardlink"):
        time.sleep(1.1)
        os.utime(remote / "raw.txt")  # the same bytes, newer than every stored object
        for f in OUTPUTS:
            (remote / f).unlink()
        proc = snakemake(wd, *args, "--nixworkflow-link-mode", mode)
        assert proc.stderr.count("restored the outputs of rule") == 3
        assert {f: (remote / f).read_bytes() for f in OUTPUTS} == expected("hello\n")
        for f in OUTPUTS:
            st = (remote / f).stat()
            assert st.st_mode & 0o200, f"{mode}: {f} uploaded read-only"
            assert st.st_mtime >= (remote / "raw.txt").stat().st_mtime, f"{mode}: {f} older than its input"
        proc = snakemake(wd, *args, "--nixworkflow-link-mode", mode)
        assert "Nothing to be done" in proc.stdout + proc.stderr
        assert ran(log) == []
