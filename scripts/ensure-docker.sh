#!/usr/bin/env bash
# Make sure a Docker engine answers `docker info`: the lab needs one, and a fresh machine has none.
# Installs Debian's docker.io when dockerd is missing, then starts dockerd in the background
# (log: /var/log/etcdops-dockerd.log) and waits until it answers. Does nothing when an engine answers.
set -euo pipefail

LOG=/var/log/etcdops-dockerd.log
WAIT_SECONDS=${ETCDOPS_DOCKER_WAIT:-60}

log() { printf '[ensure-docker] %s\n' "$*" >&2; }

answers() { command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; }

answers && exit 0

if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
  log "installing Debian's docker.io"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq docker.io >/dev/null
fi

# Start dockerd only if none is running (one may be starting up, or stuck: then we just wait).
if ! pgrep -x dockerd >/dev/null 2>&1; then
  log "starting dockerd (log: $LOG)"
  # Its own session: it must outlive the shell (and process group) that started it.
  setsid dockerd >>"$LOG" 2>&1 </dev/null &
fi

for ((i = 0; i < WAIT_SECONDS; i++)); do
  if answers; then
    log "Docker engine answers ($(docker version --format '{{.Server.Version}}' 2>/dev/null))"
    exit 0
  fi
  sleep 1
done
log "no Docker engine answers after ${WAIT_SECONDS}s; see $LOG"
exit 1
