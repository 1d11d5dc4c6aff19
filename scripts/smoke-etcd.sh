#!/usr/bin/env bash
# Smoke test the etcd binaries provided by scripts/install-etcd.sh.
#
# Usage: scripts/smoke-etcd.sh [LINE ...]   # default: 3.4 3.5 3.6 3.7
# Cache root: ${ETCDOPS_CACHE:-/var/cache/etcdops}
#
# Per line: start a single-member etcd on free loopback ports (21000-22999) with a temporary data dir,
# etcdctl put/get, etcdctl endpoint status -w json (checks the reported version),
# etcdctl snapshot save, snapshot status (etcdutl for 3.5+, etcdctl for 3.4), snapshot
# restore into a new data dir, restart etcd on the restored data and read the key back.
# Every process started here is killed before the script exits.
set -euo pipefail

CACHE_ROOT=${ETCDOPS_CACHE:-/var/cache/etcdops}
ALL_LINES=(3.4 3.5 3.6 3.7)

ETCD_PID=""
WORK=""

log() { printf '[smoke-etcd] %s\n' "$*"; }
fail() { printf '[smoke-etcd] FAIL: %s\n' "$*" >&2; exit 1; }

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

stop_etcd() {
  if [[ -n $ETCD_PID ]]; then
    kill "$ETCD_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$ETCD_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$ETCD_PID" 2>/dev/null || true
    wait "$ETCD_PID" 2>/dev/null || true
    ETCD_PID=""
  fi
}

cleanup() {
  stop_etcd
  [[ -z $WORK ]] || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() { # prints a loopback port nobody listens on (not in $1, a port to avoid)
  local p
  for _ in $(seq 200); do
    p=$((21000 + RANDOM % 2000))
    [[ $p == "${1:-}" ]] && continue
    port_in_use "$p" || { printf '%s\n' "$p"; return 0; }
  done
  fail "no free loopback port found in 21000-22999"
}

# start_etcd BIN DATA_DIR NAME CLIENT_PORT PEER_PORT LOG -> 0 once healthy, 1 if it died
start_etcd() {
  local bin=$1 data=$2 name=$3 cp=$4 pp=$5 logf=$6
  "$bin" --name "$name" --data-dir "$data" \
    --listen-client-urls "http://127.0.0.1:$cp" --advertise-client-urls "http://127.0.0.1:$cp" \
    --listen-peer-urls "http://127.0.0.1:$pp" --initial-advertise-peer-urls "http://127.0.0.1:$pp" \
    --initial-cluster "$name=http://127.0.0.1:$pp" --initial-cluster-state new \
    --logger zap --log-outputs stderr >"$logf" 2>&1 &
  ETCD_PID=$!
  for _ in $(seq 300); do
    kill -0 "$ETCD_PID" 2>/dev/null || { wait "$ETCD_PID" 2>/dev/null || true; ETCD_PID=""; return 1; }
    if ctl endpoint health >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  tail -n 30 "$logf" >&2
  fail "etcd ($bin) did not become healthy within 30s"
}

ctl() {
  "$DIR/etcdctl" --endpoints "http://127.0.0.1:$CPORT" \
    --dial-timeout 3s --command-timeout 10s "$@"
}

smoke_line() {
  local line=$1 want start status got snap_tool attempt restored
  DIR="$CACHE_ROOT/etcd/$line"
  [[ -x $DIR/etcd && -x $DIR/etcdctl && -f $DIR/VERSION ]] \
    || fail "$line: no etcd in $DIR (run scripts/install-etcd.sh $line)"
  want=$(cat "$DIR/VERSION")
  if [[ $line == 3.4 ]]; then
    export ETCDCTL_API=3 # the default in 3.4 already; 3.5+ warn about the variable
    snap_tool=("$DIR/etcdctl")
  else
    unset ETCDCTL_API
    [[ -x $DIR/etcdutl ]] || fail "$line: $DIR/etcdutl missing"
    snap_tool=("$DIR/etcdutl")
  fi
  start=$(now)
  WORK=$(mktemp -d)

  for attempt in 1 2 3; do
    CPORT=$(free_port); PPORT=$(free_port "$CPORT")
    rm -rf "$WORK/data"
    if start_etcd "$DIR/etcd" "$WORK/data" smoke "$CPORT" "$PPORT" "$WORK/etcd.log"; then break; fi
    grep -q 'address already in use' "$WORK/etcd.log" && ((attempt < 3)) && continue
    tail -n 30 "$WORK/etcd.log" >&2
    fail "$line: etcd exited at startup"
  done

  ctl put smoke/key "value-$line" >/dev/null || fail "$line: etcdctl put"
  got=$(ctl get smoke/key --print-value-only)
  [[ $got == "value-$line" ]] || fail "$line: etcdctl get returned '$got'"

  status=$(ctl endpoint status -w json) || fail "$line: etcdctl endpoint status"
  [[ $status == *"\"version\":\"$want\""* ]] \
    || fail "$line: endpoint status does not report version $want: $status"

  ctl snapshot save "$WORK/snap.db" >"$WORK/snap.log" 2>&1 \
    || { cat "$WORK/snap.log" >&2; fail "$line: etcdctl snapshot save"; }
  status=$("${snap_tool[@]}" snapshot status "$WORK/snap.db" -w json 2>"$WORK/status.log") \
    || { cat "$WORK/status.log" >&2; fail "$line: $(basename "${snap_tool[0]}") snapshot status"; }
  [[ $status == *'"totalKey":'* ]] || fail "$line: unexpected snapshot status: $status"

  stop_etcd
  restored="$WORK/restored"
  "${snap_tool[@]}" snapshot restore "$WORK/snap.db" --data-dir "$restored" \
    --name smoke --initial-cluster "smoke=http://127.0.0.1:$PPORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$PPORT" >"$WORK/restore.log" 2>&1 \
    || { cat "$WORK/restore.log" >&2; fail "$line: snapshot restore"; }
  start_etcd "$DIR/etcd" "$restored" smoke "$CPORT" "$PPORT" "$WORK/etcd-restored.log" \
    || { tail -n 30 "$WORK/etcd-restored.log" >&2; fail "$line: etcd on restored data exited"; }
  got=$(ctl get smoke/key --print-value-only)
  [[ $got == "value-$line" ]] || fail "$line: restored etcd returned '$got'"
  stop_etcd

  rm -rf "$WORK"; WORK=""
  log "$line: OK etcd $want (put/get, endpoint status, snapshot save/status/restore, restart on restored data) in $(elapsed "$start")"
}

main() {
  local lines=("$@") line
  ((${#lines[@]})) || lines=("${ALL_LINES[@]}")
  # Readers take a shared lock so that an install run does not swap binaries under us.
  if [[ ${ETCDOPS_LOCK_HELD:-0} != 1 && -e $CACHE_ROOT/.lock ]]; then
    exec 9<"$CACHE_ROOT/.lock"
    flock -s 9
  fi
  for line in "${lines[@]}"; do
    smoke_line "$line"
  done
}

main "$@"
