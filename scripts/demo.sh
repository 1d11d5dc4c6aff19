#!/usr/bin/env bash
# The demo, on a fresh machine: installs what it needs, brings a lab up, shows the cluster, takes the lab down.
# Usage: scripts/demo.sh [PREFIX] [ETCD_LINE]   (defaults: demo 3.6)
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=${1:-demo}
line=${2:-3.6}

bash scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"
export ANSIBLE_COLLECTIONS_PATH="$PWD/.build/collections"
trap 'python tests/lab/lab.py down --prefix "$prefix"' EXIT

python tests/lab/lab.py up --prefix "$prefix" --etcd-line "$line"
ansible-playbook -i ".lab/$prefix/inventory.yml" playbooks/status.yml
