#!/usr/bin/env bash
# Provide real etcd binaries for several release lines in a cache outside the repo.
#
# Usage:
#   scripts/install-etcd.sh [--no-smoke] [LINE ...]   # default lines: 3.4 3.5 3.6 3.7
#   scripts/install-etcd.sh --check-latest [LINE ...] # print pinned vs latest, change nothing
#
# Cache root: ${ETCDOPS_CACHE:-/var/cache/etcdops}. Result per line:
#   $ETCDOPS_CACHE/etcd/<line>/etcd
#   $ETCDOPS_CACHE/etcd/<line>/etcdctl
#   $ETCDOPS_CACHE/etcd/<line>/etcdutl   (3.5 and later; 3.4 has no etcdutl)
#   $ETCDOPS_CACHE/etcd/<line>/VERSION   (full version, e.g. 3.5.35)
#
# Versions are pinned in scripts/etcd-versions.txt.
#   3.4  : Debian bookworm packages etcd-server + etcd-client (apt-get download + dpkg -x,
#          nothing is installed system-wide). Dynamically linked against glibc only.
#   3.5+ : built with the local Go toolchain (GOTOOLCHAIN=local) from the Go module proxy,
#          through a throwaway wrapper module (etcd's own go.mod files carry replace
#          directives, so `go install module@version` cannot be used). CGO_ENABLED=0,
#          -trimpath, stripped: fully static binaries.
#          GOMODCACHE and GOCACHE live under $ETCDOPS_CACHE/go so rebuilds are fast.
#
# Idempotent: a line whose binaries exist and whose `etcd --version` reports the pinned
# version is skipped. Concurrent runs are serialised with flock on $ETCDOPS_CACHE/.lock.
# After installing, every requested line is smoke tested with scripts/smoke-etcd.sh
# (skip with --no-smoke).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VERSIONS_FILE="$SCRIPT_DIR/etcd-versions.txt"
CACHE_ROOT=${ETCDOPS_CACHE:-/var/cache/etcdops}
ALL_LINES=(3.4 3.5 3.6 3.7)
GIT_SHA_LDFLAG="go.etcd.io/etcd/api/v3/version.GitSHA"

TEMP_DIRS=()
cleanup() { ((${#TEMP_DIRS[@]} == 0)) || rm -rf "${TEMP_DIRS[@]}"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
tempdir() { # VAR [TEMPLATE]: VAR=new temporary dir, removed on exit
  local _d
  _d=$(mktemp -d "${@:2}")
  TEMP_DIRS+=("$_d")
  printf -v "$1" '%s' "$_d"
}

log() { printf '[install-etcd] %s\n' "$*"; }
die() { printf '[install-etcd] ERROR: %s\n' "$*" >&2; exit 1; }

usage() { sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

pinned_version() { # LINE -> full version from etcd-versions.txt
  local v
  v=$(awk -v l="$1" '$1 !~ /^#/ && $1 == l { print $2; exit }' "$VERSIONS_FILE")
  [[ -n $v ]] || die "line $1 has no pinned version in $VERSIONS_FILE"
  printf '%s\n' "$v"
}

binaries_for() { # LINE -> names of the binaries the line must provide
  if [[ $1 == 3.4 ]]; then echo "etcd etcdctl"; else echo "etcd etcdctl etcdutl"; fi
}

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

find_go() {
  local g
  g=${GO:-$(command -v go || true)}
  [[ -n $g ]] || g=/usr/local/go/bin/go
  [[ -x $g ]] || die "no Go toolchain found (set GO=/path/to/go)"
  printf '%s\n' "$g"
}

setup_go_env() { # GOMODCACHE/GOCACHE under the cache root, never fetch a toolchain
  GO_BIN=$(find_go)
  export GOTOOLCHAIN=local CGO_ENABLED=0 GO111MODULE=on
  export GOFLAGS="-modcacherw -buildvcs=false"
  export GOPATH="$CACHE_ROOT/go/path"
  export GOMODCACHE="$CACHE_ROOT/go/mod"
  export GOCACHE="$CACHE_ROOT/go/build-cache"
  mkdir -p "$GOPATH" "$GOMODCACHE" "$GOCACHE"
}

# ---------------------------------------------------------------- --check-latest

latest_on_proxy() { # LINE -> latest vX.Y.Z (no pre-releases) of server/v3 on the proxy
  "$GO_BIN" list -m -versions go.etcd.io/etcd/server/v3 | tr ' ' '\n' \
    | grep -E "^v${1//./\\.}\.[0-9]+$" | sort -V | tail -n1
}

check_latest() {
  local tmp line pinned latest note candidate
  # A private, throwaway module cache: --check-latest changes nothing.
  tempdir tmp
  GO_BIN=$(find_go)
  export GOTOOLCHAIN=local GO111MODULE=on GOFLAGS="-modcacherw -buildvcs=false"
  export GOMODCACHE="$tmp/mod" GOCACHE="$tmp/build" GOPATH="$tmp/path"
  cd "$tmp"
  printf '%-5s %-10s %-12s %s\n' LINE PINNED LATEST SOURCE
  for line in "$@"; do
    pinned=$(pinned_version "$line")
    if [[ $line == 3.4 ]]; then
      candidate=$(apt-cache policy etcd-server 2>/dev/null | awk '/Candidate:/ { print $2 }')
      latest=${candidate#*:}; latest=${latest%%-*}
      [[ -n $latest && $latest != "(none)" ]] || latest="?"
      note="Debian etcd-server ${candidate:-not found} (run apt-get update for a fresh list)"
    else
      latest=$(latest_on_proxy "$line" || true)
      note="go module proxy: go.etcd.io/etcd/server/v3"
      if [[ -n $latest ]]; then
        for m in etcdctl etcdutl; do
          "$GO_BIN" list -m "go.etcd.io/etcd/$m/v3@$latest" >/dev/null 2>&1 \
            || note="$note; WARNING go.etcd.io/etcd/$m/v3@$latest missing"
        done
        latest=${latest#v}
      else
        latest="?"
      fi
    fi
    [[ $latest == "$pinned" ]] || note="$note  <-- differs"
    printf '%-5s %-10s %-12s %s\n' "$line" "$pinned" "$latest" "$note"
  done
}

# ---------------------------------------------------------------- install

installed_ok() { # LINE VERSION -> 0 if the cache already holds that version
  local dir="$CACHE_ROOT/etcd/$1" b got
  for b in $(binaries_for "$1"); do [[ -x $dir/$b ]] || return 1; done
  got=$("$dir/etcd" --version 2>/dev/null | awk '/^etcd Version:/ { print $3 }') || return 1
  [[ $got == "$2" ]]
}

install_from_debian() { # VERSION STAGE_DIR
  local want=$1 stage=$2 work debver upstream p f
  tempdir work
  chmod 755 "$work" # apt-get download runs as _apt and must be able to write here
  if ! (cd "$work" && apt-get download etcd-server etcd-client) >"$work/apt.log" 2>&1; then
    log "3.4: etcd packages not found, running apt-get update"
    apt-get update >"$work/apt-update.log" 2>&1 || { cat "$work/apt-update.log" >&2; die "apt-get update failed"; }
    (cd "$work" && apt-get download etcd-server etcd-client) >"$work/apt.log" 2>&1 \
      || { cat "$work/apt.log" >&2; die "apt-get download etcd-server etcd-client failed"; }
  fi
  for p in etcd-server etcd-client; do
    f=$(ls "$work"/"${p}"_*.deb)
    debver=$(dpkg-deb -f "$f" Version)
    upstream=${debver#*:}; upstream=${upstream%%-*}
    [[ $upstream == "$want" ]] \
      || die "Debian $p is $debver but $VERSIONS_FILE pins 3.4 $want; update the pin"
    dpkg -x "$f" "$work/root"
  done
  log "3.4: Debian etcd-server/etcd-client $debver"
  for b in etcd etcdctl; do
    f="$work/root/usr/bin/$b"
    [[ -f $f ]] || f=$(find "$work/root" -type f -name "$b" -perm -u+x | head -n1)
    [[ -n $f && -f $f ]] || die "3.4: $b not found in the Debian packages"
    install -m 0755 "$f" "$stage/$b"
  done
  rm -rf "$work"
}

build_from_modules() { # LINE VERSION STAGE_DIR
  local line=$1 want=$2 stage=$3 wrap v="v$2" m req resolved pins=0
  setup_go_env
  tempdir wrap
  cat >"$wrap/go.mod" <<EOF
module etcdops.invalid/etcd-build

go 1.21

require (
	go.etcd.io/etcd/server/v3 $v
	go.etcd.io/etcd/etcdctl/v3 $v
	go.etcd.io/etcd/etcdutl/v3 $v
)
EOF
  cat >"$wrap/tools.go" <<'EOF'
//go:build tools

package tools

import (
	_ "go.etcd.io/etcd/etcdctl/v3"
	_ "go.etcd.io/etcd/etcdutl/v3"
	_ "go.etcd.io/etcd/server/v3"
)
EOF
  (cd "$wrap" && "$GO_BIN" mod tidy) >"$wrap/tidy.log" 2>&1 \
    || { cat "$wrap/tidy.log" >&2; die "$line: go mod tidy failed for etcd $v"; }

  # MVS must end at what etcd's own go.mod files require. If some dependency pulled a
  # different version, pin it to etcd's choice with a replace directive.
  (cd "$wrap" && "$GO_BIN" list -m all) >"$wrap/resolved.txt"
  # shellcheck disable=SC2016 # awk program, not shell
  for m in server etcdctl etcdutl; do
    printf '%s\n' "$GOMODCACHE/cache/download/go.etcd.io/etcd/$m/v3/@v/$v.mod"
  done | xargs awk '
      /^require[ \t]*\(/ { inreq = 1; next }
      inreq && /^\)/      { inreq = 0; next }
      inreq && NF >= 2 && $1 !~ /^\/\// { print $1, $2 }
      /^require[ \t]+[^( \t]/ { print $2, $3 }' \
    | sort -k1,1 -k2,2V | awk '{ want[$1] = $2 } END { for (k in want) print k, want[k] }' \
    >"$wrap/wanted.txt"
  while read -r m req; do
    resolved=$(awk -v m="$m" '$1 == m { print $2 }' "$wrap/resolved.txt")
    if [[ -n $resolved && $resolved != "$req" ]]; then
      log "$line: pinning $m $resolved -> $req (what etcd $v requires)"
      (cd "$wrap" && "$GO_BIN" mod edit -replace "$m=$m@$req")
      pins=$((pins + 1))
    fi
  done <"$wrap/wanted.txt"
  if ((pins > 0)); then
    (cd "$wrap" && "$GO_BIN" mod tidy) >"$wrap/tidy.log" 2>&1 \
      || { cat "$wrap/tidy.log" >&2; die "$line: go mod tidy failed after pinning"; }
  fi

  (cd "$wrap" && "$GO_BIN" build -trimpath \
      -ldflags "-s -w -X $GIT_SHA_LDFLAG=go-module-$v" \
      -o "$wrap/bin/" \
      go.etcd.io/etcd/server/v3 go.etcd.io/etcd/etcdctl/v3 go.etcd.io/etcd/etcdutl/v3) \
    >"$wrap/build.log" 2>&1 \
    || { cat "$wrap/build.log" >&2; die "$line: go build failed for etcd $v"; }
  # go build names the server/v3 main "server"
  install -m 0755 "$wrap/bin/server" "$stage/etcd"
  install -m 0755 "$wrap/bin/etcdctl" "$stage/etcdctl"
  install -m 0755 "$wrap/bin/etcdutl" "$stage/etcdutl"
  rm -rf "$wrap"
}

install_line() { # LINE
  local line=$1 want start dest stage got
  want=$(pinned_version "$line")
  dest="$CACHE_ROOT/etcd/$line"
  start=$(now)
  if installed_ok "$line" "$want"; then
    [[ $(cat "$dest/VERSION" 2>/dev/null) == "$want" ]] || printf '%s\n' "$want" >"$dest/VERSION"
    log "$line: etcd $want already in $dest, skipped ($(elapsed "$start"))"
    return 0
  fi
  tempdir stage "$CACHE_ROOT/etcd/.stage-$line.XXXXXX"
  if [[ $line == 3.4 ]]; then
    install_from_debian "$want" "$stage"
  else
    build_from_modules "$line" "$want" "$stage"
  fi
  got=$("$stage/etcd" --version | awk '/^etcd Version:/ { print $3 }')
  [[ $got == "$want" ]] || die "$line: built etcd reports version '$got', expected $want"
  printf '%s\n' "$want" >"$stage/VERSION"
  chmod 755 "$stage"
  rm -rf "$dest"
  mv "$stage" "$dest"
  log "$line: installed etcd $want into $dest ($(elapsed "$start"); $(cd "$dest" && du -h etcd* | awk '{ printf "%s %s  ", $2, $1 }'))"
}

main() {
  local check=0 smoke=1 lines=() line
  while (($#)); do
    case $1 in
      --check-latest) check=1 ;;
      --no-smoke) smoke=0 ;;
      -h | --help) usage; exit 0 ;;
      -*) usage >&2; die "unknown option $1" ;;
      *) lines+=("$1") ;;
    esac
    shift
  done
  ((${#lines[@]})) || lines=("${ALL_LINES[@]}")
  for line in "${lines[@]}"; do
    case $line in 3.4 | 3.5 | 3.6 | 3.7) ;; *) die "unsupported line '$line' (supported: ${ALL_LINES[*]})" ;; esac
    pinned_version "$line" >/dev/null
  done

  if ((check)); then
    check_latest "${lines[@]}"
    return 0
  fi

  mkdir -p "$CACHE_ROOT/etcd"
  exec 9>"$CACHE_ROOT/.lock"
  if ! flock -n 9; then
    log "waiting for another install-etcd.sh run (lock $CACHE_ROOT/.lock)"
    flock 9
  fi
  rm -rf "$CACHE_ROOT"/etcd/.stage-* # leftovers of an interrupted run

  local total
  total=$(now)
  for line in "${lines[@]}"; do
    install_line "$line"
  done
  log "all requested lines ready in $(elapsed "$total"): ${lines[*]}"

  if ((smoke)); then
    ETCDOPS_CACHE="$CACHE_ROOT" ETCDOPS_LOCK_HELD=1 "$SCRIPT_DIR/smoke-etcd.sh" "${lines[@]}"
  fi
}

main "$@"
