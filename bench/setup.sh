#!/usr/bin/env bash
# Installs what the benchmarks' peers need, outside the project's own environment:
#   Debian: pssh (its `parallel-ssh` command drives the OpenSSH client), openssh-client/-server, util-linux
#           (taskset), postgresql (the intake benchmark's throwaway cluster).
#   PyPI:   ansible-core, into bench/out/peers-venv (never into .venv: it is not a dependency of incident-bot).
# Idempotent: a second run only checks. The benchmark scripts run it themselves when a peer is missing.
set -euo pipefail
cd "$(dirname "$0")"

DEBIAN_PACKAGES=(pssh openssh-client openssh-server util-linux postgresql python3-venv)
PEERS_VENV=out/peers-venv  # bench/out/ is ignored by git
PYPI_PACKAGES=("ansible-core>=2.17")

say() { printf '==> %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@";
  elif command -v sudo >/dev/null 2>&1; then sudo -n "$@" || sudo "$@";
  else echo "need root (or sudo) to run: $*" >&2; return 1; fi
}

missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x "$PEERS_VENV/bin/ansible" ]; then
  say "installing ${PYPI_PACKAGES[*]} into bench/$PEERS_VENV"
  # The system Python, not a pyenv shim: the peers must not depend on a developer's shell set-up.
  python=/usr/bin/python3
  [ -x "$python" ] || python=python3
  mkdir -p out && "$python" -m venv "$PEERS_VENV"
  "$PEERS_VENV/bin/python" -m pip install -q --upgrade pip
  "$PEERS_VENV/bin/python" -m pip install -q "${PYPI_PACKAGES[@]}"
fi
say "peers ready: $("$PEERS_VENV/bin/ansible" --version | head -n 1); $(command -v parallel-ssh)"
