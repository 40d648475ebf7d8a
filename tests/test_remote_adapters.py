"""The remote through the adapters: two "hosts" (separate stores, separate checkouts) sharing only a remote.
Snakemake: a file:// remote configured by the environment (NIX_WORKFLOW_REMOTE, ...), which every front door
reads. Luigi: file:// and the real S3 server of test_remote, configured by luigi.cfg's [nixworkflow] alone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO, nw
from tests.test_remote import CREDS, Remote, keys, remote, s3_endpoint  # noqa: F401 - fixtures used here
from tests.test_snakemake import EVERY_JOB, executions, ok, snakemake, snapshot, workflow


def test_snakemake_host_b_executes_nothing_host_a_pushed(tmp_path: Path, log: Path) -> None:
    nw("key", "generate", "k1", "--secret-key-file", str(tmp_path / "k1.sec"), "--public-key-file",
       str(tmp_path / "k1.pub"), check=True)
    (tmp_path / "remote").mkdir()
    shared = {"NIX_WORKFLOW_REMOTE": f"file://{tmp_path / 'remote'}",
              "NIX_WORKFLOW_TRUSTED_KEYS": (tmp_path / "k1.pub").read_text().strip()}
    a = workflow(tmp_path / "a" / "wf", log)
    ok(snakemake(a, env=dict(shared, NIX_WORKFLOW_STORE=str(tmp_path / "store-a"), NIX_WORKFLOW_PUSH="1",
                             NIX_WORKFLOW_SECRET_KEY_FILE=str(tmp_path / "k1.sec"))))
    assert executions(log) == EVERY_JOB
    assert len(list((tmp_path / "remote" / "realisations").iterdir())) == sum(EVERY_JOB.values())

    b = workflow(tmp_path / "b" / "wf", log)
    ok(snakemake(b, env=dict(shared, NIX_WORKFLOW_STORE=str(tmp_path / "store-b"))))
    assert executions(log) == EVERY_JOB, "host B must execute nothing"
    assert snapshot(b) == snapshot(a)

    # The same through the executor's own settings instead of the environment (a profile or the command line).
    c = workflow(tmp_path / "c" / "wf", log)
    ok(snakemake(c, "--nixworkflow-remote", shared["NIX_WORKFLOW_REMOTE"], "--nixworkflow-trusted-keys",
                 shared["NIX_WORKFLOW_TRUSTED_KEYS"], env={"NIX_WORKFLOW_STORE": str(tmp_path / "store-c")}))
    assert executions(log) == EVERY_JOB, "host C must execute nothing"
    assert snapshot(c) == snapshot(a)


# ---- Luigi: the remote configured in luigi.cfg [nixworkflow] -------------------------------------------------

LUIGI = str(Path(sys.executable).with_name("luigi"))

LUIGI_GRAPH = '''
import luigi
from luigi_nixworkflow import NixTask

LOG = {log!r}


class Data(NixTask):
    def command(self):
        return f"echo data >> {{LOG}}; echo hello > {{self.output()}}/x; mkdir {{self.output()}}/d; " \\
               f"printf abc > {{self.output()}}/d/f; ln -s x {{self.output()}}/l"


class Model(NixTask):
    def requires(self):
        return Data()

    def produce(self, out):
        with open(LOG, "a") as log:
            log.write("model\\n")
        (out / "y").write_text(open(self.input().path + "/x").read().upper())
'''


def luigi_host(tmp_path: Path, name: str, cfg: str, log: Path) -> tuple[Path, dict[str, str]]:
    """A host of its own: a checkout (the graph module and luigi.cfg) and a store; nothing remote-related in
    its environment, so the remote comes from luigi.cfg alone."""
    work = tmp_path / f"host-{name}"
    work.mkdir()
    (work / "nwgraph.py").write_text(LUIGI_GRAPH.format(log=str(log)))
    (work / "luigi.cfg").write_text(f"[nixworkflow]\nstore = {tmp_path / f'store-{name}'}\n{cfg}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NIX_WORKFLOW_", "AWS_"))}
    env.update(CREDS, PYTHONPATH=f"{work}{os.pathsep}{REPO}", LUIGI_CONFIG_PATH=str(work / "luigi.cfg"))
    return work, env


def run_luigi(work: Path, env: dict[str, str]) -> str:
    proc = subprocess.run([LUIGI, "--module", "nwgraph", "Model", "--local-scheduler", "--retcode-task-failed", "3",
                           "--retcode-scheduling-error", "4", "--retcode-unhandled-exception", "5"],
                          cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "This progress looks :)" in proc.stderr + proc.stdout, proc.stderr
    return proc.stderr


def test_luigi_host_b_executes_nothing_host_a_pushed(tmp_path: Path, remote: Remote,  # noqa: F811
                                                     keys: dict[str, str]) -> None:  # noqa: F811
    log = tmp_path / "executions.log"
    trusted = f"trusted_public_keys = {keys['k1.pub']}\n"
    a, env_a = luigi_host(tmp_path, "a", f"remote = {remote.url}\npush = true\nsecret_key_file = {keys['k1']}\n"
                          + trusted, log)
    run_luigi(a, env_a)
    assert log.read_text().split() == ["data", "model"]
    assert sum(k.startswith("realisations/") for k in remote.keys()) == 2

    b, env_b = luigi_host(tmp_path, "b", f"remote = {remote.url}\n" + trusted, log)
    err = run_luigi(b, env_b)
    assert log.read_text().split() == ["data", "model"], err  # host B executed nothing
    assert (b / "nix-workflow-output/Model__99914b932b/y").read_text() == "HELLO\n"
    assert os.readlink(b / "nix-workflow-output/Data__99914b932b/l") == "x"
    shown = nw("show", "nix-workflow-output/Model__99914b932b/y", cwd=b,
               env={"NIX_WORKFLOW_STORE": str(tmp_path / "store-b")}, check=True).stdout
    assert '"signed_by": "k1"' in shown


def test_luigi_environment_overrides_luigi_cfg_remote(tmp_path: Path, keys: dict[str, str]) -> None:  # noqa: F811
    """NIX_WORKFLOW_REMOTE wins over luigi.cfg's `remote` (as for every [nixworkflow] key): pushes go there."""
    log = tmp_path / "executions.log"
    (tmp_path / "cfg-remote").mkdir()
    (tmp_path / "env-remote").mkdir()
    a, env_a = luigi_host(tmp_path, "a", f"remote = file://{tmp_path / 'cfg-remote'}\npush = true\n"
                          f"secret_key_file = {keys['k1']}\n", log)
    run_luigi(a, dict(env_a, NIX_WORKFLOW_REMOTE=f"file://{tmp_path / 'env-remote'}"))
    assert len(list((tmp_path / "env-remote" / "realisations").iterdir())) == 2
    assert not (tmp_path / "cfg-remote" / "realisations").exists()


# ---- pushing asked for with no remote: an error, not a run that silently pushes nothing ---------------------


def test_push_without_a_remote_is_an_error_before_anything_runs(tmp_path: Path, log: Path) -> None:
    (tmp_path / "exp.py").write_text("from nixlib import output\na = output('echo hi > $out/x')\n")
    store = tmp_path / "store"
    env = {"NIX_WORKFLOW_STORE": str(store), "NIX_WORKFLOW_REMOTE": ""}
    proc = nw("run", "--push", "exp.py", cwd=tmp_path, env=env)
    assert proc.returncode != 0 and "no remote is configured" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not store.exists(), "nothing may be created"

    wf = workflow(tmp_path / "wf", log)
    proc = snakemake(wf, "--nixworkflow-push", env=env)
    assert proc.returncode != 0 and "no remote is configured" in proc.stderr, proc.stderr
    assert executions(log) == {} and not list(store.glob("realisations/*"))
