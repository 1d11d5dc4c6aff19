#!/usr/bin/env bash
# Make sure a Docker engine answers `docker info`: the lab needs one, and a fresh machine has none.
# Installs Debian's docker.io when dockerd is missing, then starts dockerd in the background
# (log: /var/log/etcdops-dockerd.log) and waits until it answers. Does nothing when an engine answers.
#
# A fresh machine may differ from a developer's: a PATH without the sbin directories (where dockerd,
# iptables and dpkg's helpers live), a kernel without nf_tables or overlayfs. So the PATH is completed
# here, and when dockerd exits at start the next configuration is tried (legacy iptables, no iptables,
# the vfs storage driver). When nothing answers, the last lines of dockerd's log are printed, and the
# last line of this script's output says why, so a CI report shows the cause.
set -euo pipefail

export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin${PATH:+:$PATH}"
LOG=${ETCDOPS_DOCKER_LOG:-/var/log/etcdops-dockerd.log}
{ mkdir -p "$(dirname "$LOG")" && touch "$LOG"; } 2>/dev/null || LOG=${TMPDIR:-/tmp}/etcdops-dockerd.log
WAIT_SECONDS=${ETCDOPS_DOCKER_WAIT:-60}
LOCK=${TMPDIR:-/tmp}/etcdops-ensure-docker.lock

log() { printf '[ensure-docker] %s\n' "$*" >&2; }

answers() { command -v docker >/dev/null 2>&1 && timeout 20 docker info >/dev/null 2>&1; }

answers && exit 0

# Several test processes may get here at once: one installs and starts, the others wait for it.
mkdir -p "$(dirname "$LOCK")"
exec 9>"$LOCK"
for ((waited = 0; ; waited++)); do
  flock -n 9 && break
  answers && exit 0
  ((waited < 600)) || { log "another ensure-docker holds $LOCK for 10 min"; exit 1; }
  sleep 1
done
answers && exit 0

if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
  log "installing Debian's docker.io"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq docker.io >/dev/null
fi
command -v dockerd >/dev/null 2>&1 || { log "dockerd is still missing after installing docker.io"; exit 1; }

# Waits until the engine answers (0), dockerd exits (1) or time runs out (2).
wait_for() {
  local pid=$1 i
  for ((i = 0; i < WAIT_SECONDS; i++)); do
    answers && return 0
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then return 1; fi
    sleep 1
  done
  return 2
}

started() {
  log "Docker engine answers ($(docker version --format '{{.Server.Version}}' 2>/dev/null))"
  exit 0
}

# One may be starting up already (or stuck): wait for it before starting another.
if pid=$(pgrep -x -o dockerd); then
  log "dockerd (pid $pid) is running: waiting for it to answer"
  if wait_for "$pid"; then started; fi
  if kill -0 "$pid" 2>/dev/null; then
    log "dockerd (pid $pid) does not answer after ${WAIT_SECONDS}s: stopping it to start afresh"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
fi

use_legacy_iptables() {
  if [ -x /usr/sbin/iptables-legacy ] && command -v update-alternatives >/dev/null 2>&1; then
    update-alternatives --set iptables /usr/sbin/iptables-legacy >/dev/null 2>&1 || true
    update-alternatives --set ip6tables /usr/sbin/ip6tables-legacy >/dev/null 2>&1 || true
  fi
}

attempts=("" "legacy-iptables" "--iptables=false --ip6tables=false" "--iptables=false --ip6tables=false --storage-driver=vfs")
for attempt in "${attempts[@]}"; do
  flags=$attempt
  if [ "$attempt" = legacy-iptables ]; then
    [ -x /usr/sbin/iptables-legacy ] || continue
    use_legacy_iptables
    flags=""
  fi
  log "starting dockerd ${flags:+$flags }(log: $LOG)"
  echo "=== $(date -u +%FT%TZ) ensure-docker: dockerd $flags" >>"$LOG"
  # Its own session: it must outlive the shell (and process group) that started it.
  # shellcheck disable=SC2086 # flags are words
  # fd 9 (the lock) closed: dockerd must not hold it for as long as it runs.
  setsid dockerd $flags >>"$LOG" 2>&1 </dev/null 9>&- &
  pid=$!
  if wait_for "$pid"; then started; fi
  rc=$?
  if [ "$rc" = 2 ]; then
    log "dockerd ${flags:+$flags }did not answer within ${WAIT_SECONDS}s"
    kill "$pid" 2>/dev/null || true
    sleep 5
    kill -9 "$pid" 2>/dev/null || true
  else
    log "dockerd ${flags:+$flags }exited at start: $(grep -E 'level=(fatal|error)|failed' "$LOG" | tail -n 1 | cut -c1-300)"
  fi
  # Leave no half-started containerd behind for the next attempt.
  pkill -f 'docker/containerd/containerd.toml' 2>/dev/null || true
  rm -f /var/run/docker.pid
done

log "last lines of $LOG:"
tail -n 40 "$LOG" >&2 || true
reason=$(grep -E 'level=(fatal|error)|failed to start' "$LOG" | tail -n 1 | cut -c1-300)
log "no Docker engine answers: ${reason:-see $LOG}"
exit 1
