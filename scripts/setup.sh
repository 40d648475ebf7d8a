#!/usr/bin/env bash
# Installs everything `make demo` and `make test` need: as root on Debian the system
# packages (Nix, bubblewrap, hyperfine, chromium), then a virtual environment with the project.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v nix-instantiate >/dev/null || need_apt+=(nix-bin)
command -v bwrap >/dev/null || need_apt+=(bubblewrap)
command -v hyperfine >/dev/null || need_apt+=(hyperfine)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)          # the `nw view` browser tests (Playwright)
[ -x /usr/sbin/slurmctld ] || need_apt+=(slurm-wlm)     # the `--slurm` tests: a one-node Slurm cluster
[ -x /usr/sbin/munged ] || need_apt+=(munge)             # (started by tests/slurm_cluster.py as root)
command -v rsync >/dev/null || need_apt+=(rsync)         # snakemake-storage-plugin-fs (tests/test_snakemake_storage27.py)
if ((${#need_apt[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing ${need_apt[*]} with apt-get" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "setup: please install ${need_apt[*]} (Debian: sudo apt-get install ${need_apt[*]});" \
         "steps with host envs work without Nix" >&2
  fi
fi

stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -e "$stamp" ]; then
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -e '.[snakemake,luigi,remote,test]'
  touch "$stamp"
fi
