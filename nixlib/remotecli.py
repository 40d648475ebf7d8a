"""The `nw push`, `nw pull` and `nw key` commands, and the remote options of `nw run` (see docs/remote.md).

Kept apart from nixlib/cli.py so the remote's dependencies (boto3, cryptography) load only when a command
needs them, and so the remote's command-line surface lives in one place.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from nixlib import arguments
from nixlib.errors import NixWorkflowError

REMOTE_HELP = "remote cache URL: s3://BUCKET/PREFIX[?endpoint=URL&region=R] or file:///DIR (default: " \
              "$NIX_WORKFLOW_REMOTE, else `remote:` in the nixworkflow.yaml next to the experiment file, or in " \
              "the current directory)"
KEYS_TEXT = """\
Trust: a record from a remote is used only if it is signed by a key listed in NIX_WORKFLOW_TRUSTED_KEYS
(or `trusted-public-keys` under `remote:` in nixworkflow.yaml), and an object only once it re-hashes to
its name (a download stops at the NAR size the record signs). Pushing signs records with the secret key in
--secret-key-file / NIX_WORKFLOW_SECRET_KEY_FILE.
"""

PUSH_EPILOG = """\
examples:
  nw push --remote s3://lab-cache/nw?endpoint=http://minio:9000 --secret-key-file ~/.config/nw/lab.sec
                                        push every step of the last `nw run` here, with its lineage
  nw push model_base                    push one step (and every step it used)
  nw push nix-workflow-output/model_base/metrics.json   push the step that made this file
  NIX_WORKFLOW_PUSH=1 nw run experiment.py   push each step as soon as it succeeds

Objects go first, the signed record last, so a record on the remote never names a missing object; an
interrupted push leaves nothing visible. The first writer of a record wins: pushing a key the remote
already has, validly signed, changes nothing (a record there that no key holder signed is replaced).

""" + KEYS_TEXT

PULL_EPILOG = """\
examples:
  nw pull experiment.py                 fetch every step of the experiment the remote has (runs nothing)
  nw pull experiment.nix model_base     fetch one step and what it needs
  nw pull 0c5b…(52 characters)          fetch one realisation by resolved key, with its lineage

`nw run` does the same on its own when a remote is configured: a step missing locally is looked up on
the remote before anything runs. A remote that cannot be reached is an error here, and a warning in
`nw run` (which then runs the steps locally).

""" + KEYS_TEXT

KEY_EPILOG = """\
examples:
  nw key generate lab-cache-1           writes lab-cache-1.sec (secret, mode 0600) and lab-cache-1.pub
  nw key public lab-cache-1.sec         prints the public key of a secret key file

Keys are Nix's binary-cache keys (`nix-store --generate-binary-cache-key` makes the same files): give
the secret key to the machines that push (--secret-key-file or NIX_WORKFLOW_SECRET_KEY_FILE) and the
public key to every machine that pulls (NIX_WORKFLOW_TRUSTED_KEYS="lab-cache-1:BASE64..." or
`trusted-public-keys` under `remote:` in nixworkflow.yaml). Name keys after who holds them, with a
number, so a leaked key can be retired by dropping it from the trusted list.
"""


def _add_remote_options(parser: argparse.ArgumentParser, remote_help: str = REMOTE_HELP,
                        secret_help: str | None = None, store: bool = True) -> None:
    """The options `nw run`, `nw push` and `nw pull` share: --remote, --secret-key-file (when the command signs)
    and the per-subcommand --store (`nw push --store DIR`, as every other subcommand takes it; `nw run` has its own)."""
    parser.add_argument("--remote", metavar="URL", help=remote_help)
    if secret_help is not None:
        parser.add_argument("--secret-key-file", metavar="FILE", help=secret_help)
    if store:
        parser.add_argument("--store", dest="store_sub", metavar="DIR", help=argparse.SUPPRESS)


def add_run_options(run: argparse.ArgumentParser) -> None:
    """`nw run --remote URL [--push] [--secret-key-file FILE]`."""
    _add_remote_options(run, REMOTE_HELP + "; steps missing locally are fetched from it (verified) before anything "
                        "runs", "key that signs pushed records (default: $NIX_WORKFLOW_SECRET_KEY_FILE)", store=False)
    run.add_argument("--push", action="store_true", default=None, help="push each step that runs to the remote, "
                     "signed (needs --secret-key-file; default: $NIX_WORKFLOW_PUSH or `push:` under `remote:`)")


def add_parsers(sub: Any) -> None:
    """The push, pull and key subcommands."""
    fmt = argparse.RawDescriptionHelpFormatter
    push = sub.add_parser("push", help="upload realisations and their lineage to a remote cache, signed",
                          description="Upload steps' results to a remote cache: their objects (compressed NAR "
                          "streams) and their realisation records, signed with your secret key, together with "
                          "every upstream step they used. WHAT is a step name from the last `nw run` here, a path "
                          "under ./nix-workflow-output/, a file a step produced, or a key; default: every step of "
                          "the last run here.", epilog=PUSH_EPILOG, formatter_class=fmt)
    push.add_argument("what", nargs="*", metavar="WHAT")
    _add_remote_options(push, secret_help="key that signs the records (default: $NIX_WORKFLOW_SECRET_KEY_FILE, "
                        "else `secret-key-file:` under `remote:`)")
    push.add_argument("--out-link", default="nix-workflow-output", metavar="DIR",
                      help="the output-link directory of the run whose steps to push, as given to `nw run --out-link` "
                      "(default: nix-workflow-output); its last-run summary names the steps when none are given")

    pull = sub.add_parser("pull", help="download verified realisations from a remote cache (runs nothing)",
                          usage="nw pull [options] "
                          "(FILE [TARGET ...] | KEY [KEY ...])",
                          description="Fetch results from a remote cache into the store without running anything: "
                          "every step of an experiment (or TARGETs and what they need) that the remote has, or "
                          "realisations by resolved key with their lineage. Each record must be signed by a trusted "
                          "key and each object must re-hash to its name; anything else is skipped with a warning.",
                          epilog=PULL_EPILOG, formatter_class=fmt)
    pull.add_argument("what", nargs="+", metavar="FILE [TARGET...] | KEY...",
                      help="an experiment and the steps to fetch (default: all), or resolved keys")
    _add_remote_options(pull)
    pull.add_argument("--allow-unpinned", action="store_true", help=argparse.SUPPRESS)
    arguments.add_options(pull)

    key = sub.add_parser("key", help="make or inspect signing keys for remote caches",
                         description="Make an ed25519 key pair for signing pushed records, or print the public key "
                         "of a secret key file.", epilog=KEY_EPILOG, formatter_class=fmt)
    actions = key.add_subparsers(dest="key_cmd", required=True, metavar="ACTION")
    gen = actions.add_parser("generate", help="write NAME.sec and NAME.pub", epilog=KEY_EPILOG, formatter_class=fmt,
                             description="Make a key pair named NAME; writes the secret key (mode 0600) and the "
                             "public key, never overwriting existing files, and prints the public key.")
    gen.add_argument("name", metavar="NAME", help="the key's name, e.g. lab-cache-1 (recorded in every signature)")
    gen.add_argument("--secret-key-file", metavar="FILE", help="where to write the secret key (default: NAME.sec)")
    gen.add_argument("--public-key-file", metavar="FILE", help="where to write the public key (default: NAME.pub)")
    pub = actions.add_parser("public", help="print the public key of a secret key file", epilog=KEY_EPILOG,
                             formatter_class=fmt, description="Print the public key (NAME:BASE64) of a secret key "
                             "file, to trust on pulling machines.")
    pub.add_argument("secret", metavar="SECRET_FILE")


def configure(args: argparse.Namespace, directory: Path) -> None:
    """Apply `remote:` from DIRECTORY/nixworkflow.yaml (defaults) and the command line (overrides)."""
    from nixlib import remote
    from nixlib.config import check_push_flag, check_remote_url, find_config, load_config, mentions

    check_remote_url(getattr(args, "remote", None), "--remote")
    check_remote_url(os.environ.get(remote.ENV_URL), remote.ENV_URL)
    check_push_flag(os.environ.get(remote.ENV_PUSH), remote.ENV_PUSH)
    path = find_config(directory)
    if path is not None and mentions(path, "remote"):  # `nw run FILE.py` otherwise never reads the file
        cfg = load_config(path).remote
        if cfg:
            remote.apply_settings(cfg["url"], cfg.get("trusted-public-keys"), cfg.get("secret-key-file"),
                                  cfg.get("push"))
    secret = getattr(args, "secret_key_file", None)
    remote.apply_settings(getattr(args, "remote", None), None, remote.resolve_key_file(secret) if secret else None,
                          getattr(args, "push", None), override=True)


def _remote(what: str) -> Any:
    from nixlib import remote

    configured = remote.configured()
    if configured is None:
        raise NixWorkflowError(f"`nw {what}` needs a remote: pass --remote URL (s3://BUCKET/PREFIX or file:///DIR), "
                               f"set {remote.ENV_URL}, or add `remote: URL` to nixworkflow.yaml (the one next to the "
                               "experiment file, else in the current directory)")
    return configured


def cmd_push(args: argparse.Namespace) -> int:
    from nixlib import lineage
    from nixlib.remotes import RemoteDown
    from nixlib.store import Store

    configure(args, Path.cwd())
    target = _remote("push")
    if target.secret is None:
        target.signed({})  # raises the error that says how to make and pass a key
    store, out_dir = Store(), Path(args.out_link)
    whats = args.what or [name for name, e in lineage.last_run(out_dir).items()
                          if isinstance(e, dict) and e.get("status") in ("done", "cached")]
    if not whats:
        raise NixWorkflowError(f"nothing to push: no step succeeded in the last `nw run` here ({out_dir}); name "
                               "steps, files or keys to push")
    pushed = present = 0
    seen: set[str] = set()  # a step in the lineage of several WHATs: pushed once, reported once
    try:
        for what in whats:
            for name, key, done in target.push_closure(store, lineage.find_record(store, what, out_dir), seen):
                print(f"{'pushed' if done else 'already there'}: {name} {key}")
                pushed, present = pushed + done, present + (not done)
    except RemoteDown as e:
        raise NixWorkflowError(f"cannot push to {target.url}: {e}") from None
    print(f"nw: {pushed} realisation(s) pushed to {target.url}, {present} already there "
          f"({target.backend.guarantee})", file=sys.stderr)
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    from nixlib.store import Store

    first = Path(args.what[0])
    directory = first.parent if first.suffix in (".py", ".nix") else Path.cwd()
    configure(args, directory)
    target = _remote("pull")
    store = Store()
    if first.suffix in (".py", ".nix"):
        lines = _pull_workflow(store, target, first, args)
    else:
        lines = _pull_keys(store, target, args.what)
    if target.down:
        raise NixWorkflowError(f"cannot pull from {target.url}: it is unavailable (see the warning above)")
    for line in lines:
        print(line)
    missing = sum("not on the remote" in line for line in lines)
    print(f"nw: {len(lines) - missing} step(s) in the store, {missing} not available from {target.url}",
          file=sys.stderr)
    # Keys named on the command line must all arrive, as `nix copy --from` fails for a missing path; of an
    # experiment's steps, those nobody has built yet are simply not there to pull.
    return 1 if missing and first.suffix not in (".py", ".nix") else 0


def _pull_workflow(store: Any, target: Any, path: Path, args: argparse.Namespace) -> list[str]:
    from nixlib.cli import _load  # the loader `nw run` uses (experiment.py or experiment.nix)
    from nixlib.engine import Engine, topological

    if args.allow_unpinned:
        os.environ["NIX_WORKFLOW_ALLOW_UNPINNED"] = "1"
    workflow = _load(str(path), arguments.from_args(args))
    engine = Engine(store)
    lines = []
    for recipe in topological(workflow.select(args.what[1:])):
        result = engine.lookup(recipe)
        if target.down:
            break
        if result is None:
            lines.append(f"not on the remote: {recipe.name}")
        else:
            how = "pulled" if result.resolved_key in target.pulled else "here"  # (not: substituted some day)
            lines.append(f"{how}: {recipe.name} {result.resolved_key}")
    return lines


def _pull_keys(store: Any, target: Any, keys: list[str]) -> list[str]:
    from nixlib import records

    bad = [k for k in keys if not records.is_name(k)]
    if bad:
        raise NixWorkflowError(f"nw pull: {bad[0]!r} is neither an experiment file (.py, .nix) nor a resolved key "
                               "(52 characters; `nw show STEP` prints it)")
    lines = []
    for key in keys:
        for name, k, status in target.pull_closure(store, key):
            lines.append(f"{status}: {name} {k}" if status in ("pulled", "here") else f"{status}: {k}")
            if target.down:
                return lines
    return lines


def cmd_key(args: argparse.Namespace) -> int:
    from nixlib import signing

    if args.key_cmd == "public":
        print(signing.load_secret(args.secret).public())
        return 0
    key = signing.generate(args.name)
    secret_path = Path(args.secret_key_file or f"{args.name}.sec")
    public_path = Path(args.public_key_file or f"{args.name}.pub")
    for p in (secret_path, public_path):
        if os.path.lexists(p):
            raise NixWorkflowError(f"{p} exists: nw key generate never overwrites a key; remove it or choose "
                                   "another file with --secret-key-file / --public-key-file")
    _write_new(secret_path, signing.secret_text(key) + "\n", 0o600)
    try:
        _write_new(public_path, key.public() + "\n", 0o644)
    except BaseException:  # no secret key without its public half (it blocked the retry: "exists")
        secret_path.unlink()
        raise
    print(key.public())
    print(f"nw: wrote the secret key to {secret_path} (keep it private: it signs pushed records) and the public key "
          f"to {public_path}. Trust it on pulling machines with NIX_WORKFLOW_TRUSTED_KEYS=\"{key.public()}\"",
          file=sys.stderr)
    return 0


def _write_new(path: Path, text: str, mode: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    except OSError as e:
        raise NixWorkflowError(f"cannot create {path}: {e.strerror}") from None
    with open(fd, "w", encoding="ascii") as f:
        f.write(text)
