#!/usr/bin/env bash
# Installs everything the demo and the tests need on a fresh Debian machine, idempotently:
# Debian packages, a controller virtualenv (.venv) with ansible/molecule/pytest and the
# collection's Python requirements, and the collection path the tests use (.build/collections).
# The Docker engine, the etcd builds and the lab image are installed by the lab itself
# (scripts/ensure-docker.sh, scripts/install-etcd.sh, tests/lab/lab.py) when first needed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

log() { printf '[bootstrap] %s\n' "$*"; }

apt_packages=(git make openssl rsync age minisign debootstrap ca-certificates shellcheck)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1
fi

# ansible-core 2.21 needs Python >= 3.12 on the controller: take the newest one available.
find_python() {
  local c
  for c in python3.14 python3.13 python3.12; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys' >/dev/null 2>&1; then command -v "$c"; return; fi
  done
  for c in $(find "${PYENV_ROOT:-$HOME/.pyenv}/versions" -maxdepth 3 -path '*/3.1[2-9]*/bin/python3' 2>/dev/null | sort -rV); do
    [ -x "$c" ] && { echo "$c"; return; }
  done
  for c in /usr/bin/python3.1[2-9]; do [ -x "$c" ] && { echo "$c"; return; }; done
  return 1
}

want=$(cat requirements.txt tests/requirements.txt | sha256sum | cut -c1-16)
if [ ! -x .venv/bin/python ] || [ "$(cat .venv/.requirements 2>/dev/null)" != "$want" ]; then
  py=$(find_python) || { echo "bootstrap: no Python >= 3.12 found (needed by ansible-core on the controller)" >&2; exit 1; }
  log "creating .venv with $py"
  [ -x .venv/bin/python ] || "$py" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r requirements.txt -r tests/requirements.txt
  echo "$want" > .venv/.requirements
fi

# ansible-core imports cryptography's DSA, which cryptography 46+ deprecates: every ansible command printed a warning
# about it, about no code of ours. Silence that one warning in this venv (a .pth line runs at interpreter start).
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "import warnings; warnings.filterwarnings('ignore', message='DSA is deprecated', module='ansible')" \
  > "$site/etcdops-quiet-dsa.pth"

# The collection as Ansible and pytest import it: ansible_collections/etcdops/etcd -> this repository.
mkdir -p .build/collections/ansible_collections/etcdops
ln -sfn "$root" .build/collections/ansible_collections/etcdops/etcd
log "ready: $(.venv/bin/ansible --version | sed -n 1p)"
