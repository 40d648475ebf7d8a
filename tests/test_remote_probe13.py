"""Remote cache probe (wave 13): trust and error paths of remotes through the real `nw` CLI, against a real S3
server (SeaweedFS's `weed`) and file:// remotes; two "hosts" are separate stores and working directories that
share only the remote."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from nixlib import signing
from nixlib.recipe import canonical_json
from tests.helpers import tree_snapshot
from tests.test_remote import (  # noqa: F401 - fixtures used here
    Host,
    Remote,
    experiment,
    keys,
    ran,
    remote,
    s3_endpoint,
    weed_server,
)


@pytest.fixture(scope="module")
def s3_with_credentials(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A SeaweedFS S3 server that checks credentials: only nw-test/nw-test may use it."""
    data = tmp_path_factory.mktemp("weed-iam")
    config = data / "s3.json"
    config.write_text(json.dumps({"identities": [{"name": "admin", "credentials": [
        {"accessKey": "nw-test", "secretKey": "nw-test"}], "actions": ["Admin", "Read", "Write", "List"]}]}))
    with weed_server(data, f"-s3.config={config}") as endpoint:
        yield endpoint


def test_pull_by_key_and_push_with_a_remote_that_fails_us_are_one_clear_error(
        tmp_path: Path, keys: dict[str, str], s3_with_credentials: str) -> None:  # noqa: F811
    """`nw pull KEY` from an unreachable remote (a directory that is not mounted; an S3 server refusing the
    credentials) was "nw: internal error" with a traceback and exit 70: the RemoteDown of `_pull_one` was never
    caught. `nw push` with wrong credentials said only "403: Forbidden" (a HEAD answer has no body)."""
    exp, count = experiment(tmp_path)
    s3 = Remote("s3", tmp_path, s3_with_credentials)  # (created with the right credentials)
    a = Host(tmp_path, "a", s3, keys["k1.pub"])
    a.run(exp, "--push", "--secret-key-file", keys["k1"])
    rk = json.loads(a.nw("show", "model", "--json", check=True).stdout)["resolved_key"]
    wrong = {"AWS_SECRET_ACCESS_KEY": "not-the-secret"}
    unmounted = f"file://{tmp_path / 'not-mounted'}"
    for url, env in ((unmounted, {}), (s3.url, wrong)):
        b = Host(tmp_path, f"b{len(url)}", s3, keys["k1.pub"])
        pulled = b.nw("pull", rk, "--remote", url, env=env)
        assert pulled.returncode == 1, pulled.stderr
        assert "Traceback" not in pulled.stderr and "internal error" not in pulled.stderr, pulled.stderr
        assert f"error: cannot pull from {url}" in pulled.stderr, pulled.stderr
        assert not list((b.store / "realisations").glob("*.json")) if b.store.exists() else True
    before = tree_snapshot(a.store)
    pushed = a.nw("push", "--remote", s3.url, "--secret-key-file", keys["k1"], "model", env=wrong)
    assert pushed.returncode == 1 and "Traceback" not in pushed.stderr, pushed.stderr
    assert f"cannot push to {s3.url}" in pushed.stderr and "check the credentials" in pushed.stderr, pushed.stderr
    assert tree_snapshot(a.store) == before
    assert ran(count) == ["data", "model"]


def test_log_of_a_substituted_step_is_never_a_local_runs_log(tmp_path: Path, remote: Remote,  # noqa: F811
                                                              keys: dict[str, str]) -> None:  # noqa: F811
    """Host B's run of a step failed; host A's run of the same recipe succeeded and was pushed; B's next run
    substituted A's result. `nw log STEP` on B then printed B's failed run's log ("FAILED HERE", from
    logs/<key>.log of B's store) as the log of the result it serves, which exited 0 on A."""
    ok = tmp_path / "ok"
    exp = tmp_path / "flaky.py"
    exp.write_text("from nixlib import output\n"
                   f"flaky = output('if [ -e {ok} ]; then echo RAN ON A; echo v > $out/v; "
                   "else echo FAILED HERE; exit 1; fi')\n")
    a, b = Host(tmp_path, "a", remote, keys["k1.pub"]), Host(tmp_path, "b", remote, keys["k1.pub"])
    assert b.run(exp, check=False).returncode != 0
    assert "FAILED HERE" in b.nw("log", "flaky").stdout  # the failure's log, as it should be
    ok.touch()
    a.run(exp, "--push", "--secret-key-file", keys["k1"])
    ok.unlink()
    b.run(exp)  # substituted: B runs nothing
    assert (b.cwd / "nix-workflow-output/flaky/v").read_text() == "v\n"
    log = b.nw("log", "flaky")
    assert "FAILED HERE" not in log.stdout, log.stdout
    assert log.returncode == 1 and "substituted from" in log.stderr and "Traceback" not in log.stderr, log.stderr
    shown = b.nw("show", "flaky", check=True).stdout
    assert "substituted, not run here" in shown, shown


def test_a_forged_record_on_the_remote_is_replaced_by_the_next_push(tmp_path: Path, remote: Remote,  # noqa: F811
                                                                     keys: dict[str, str]) -> None:  # noqa: F811
    """A record that someone who can write the remote, but holds no key, put at a step's name (garbage, unsigned,
    or changed after k1 signed it) is ignored by every host, which builds the step again. A push of the good
    record was refused by first-writer-wins and reported "already there", so the remote never served the
    step again. It is now replaced by the good record; a record signed by a key the pusher does not know is
    left alone (hosts that trust that key use it)."""
    exp, count = experiment(tmp_path)
    a = Host(tmp_path, "a", remote, keys["k1.pub"])
    a.run(exp, "--push", "--secret-key-file", keys["k1"])
    (rec,) = [k for k in remote.keys() if k.startswith("realisations/") and b"echo model" in remote.read(k)]
    good = remote.read(rec)
    unsigned = {k: v for k, v in json.loads(good).items() if k != "sig"}
    forged = {"garbage": b"{not json", "unsigned": json.dumps(unsigned).encode(),
              "changed after signing": good.replace(b"echo model", b"echo MODEL")}
    for i, (why, data) in enumerate(forged.items()):
        remote.write(rec, data)
        pushed = a.nw("push", "--remote", remote.url, "--secret-key-file", keys["k1"], "model", check=True)
        assert "pushed: model" in pushed.stdout, (why, pushed.stdout)
        assert json.loads(remote.read(rec)) == json.loads(good), why
        b = Host(tmp_path, f"b{i}", remote, keys["k1.pub"])
        b.run(exp)
        assert ran(count) == ["data", "model"], (why, b.nw("show", "model").stdout)
    # signed by k2, a key A neither holds nor trusts: not A's to judge (hosts that trust k2 use it); it stays
    theirs = json.loads(good)
    theirs.pop("sig")
    theirs["sig"] = signing.load_secret(keys["k2"]).sign(canonical_json(theirs).encode())
    remote.write(rec, json.dumps(theirs).encode())
    again = a.nw("push", "--remote", remote.url, "--secret-key-file", keys["k1"], "model", check=True)
    assert "already there: model" in again.stdout, again.stdout
    assert json.loads(remote.read(rec))["sig"].startswith("k2:")
