#!/usr/bin/env bash
# The demo, on a fresh machine: installs what it needs (Debian packages, the controller venv; the Docker engine,
# the etcd build and the lab image come with the lab), then lab up -> keys -> encrypted backup to S3 -> every
# member's data lost -> restore.yml from S3 -> verified; the lab is taken down at the end (scripts/demo.py).
# Usage: scripts/demo.sh [PREFIX] [ETCD_LINE]   (defaults: demo 3.6)
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=${1:-demo}
line=${2:-3.6}

bash scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"
export ANSIBLE_COLLECTIONS_PATH="$PWD/.build/collections"
exec python scripts/demo.py "$prefix" "$line"
