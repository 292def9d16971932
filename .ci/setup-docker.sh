#!/usr/bin/env bash
# Make a Docker engine available for building and testing the servekit images.
#
# Idempotent; safe to run on a fresh machine or one where the engine already runs:
#   1. installs Debian's docker.io (engine) when dockerd is missing,
#   2. starts dockerd WITHOUT a bridge network when no engine answers (these machines do not
#      allow traffic to private-range addresses, so containers use --network host),
#   3. waits for `docker info` with a deadline,
#   4. makes the local base image (./build.sh base) when no container registry is reachable.
#
# Environment:
#   SERVEKIT_DOCKER_WAIT_S   seconds to wait for the engine (default 90)
#   SERVEKIT_DOCKERD_LOG     dockerd's log file (default /tmp/servekit-dockerd.log)
#   SERVEKIT_SKIP_BASE=1     do not make the base image
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
wait_s="${SERVEKIT_DOCKER_WAIT_S:-90}"
log="${SERVEKIT_DOCKERD_LOG:-/tmp/servekit-dockerd.log}"

say() { printf '[setup-docker] %s\n' "$*" >&2; }

apt_install() {
    # apt-get update once per run; noninteractive so CI never waits on a prompt.
    if [[ -z "${_apt_updated:-}" ]]; then
        apt-get update -qq
        _apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

engine_answers() { timeout 10 docker info >/dev/null 2>&1; }

if ! command -v dockerd >/dev/null 2>&1; then
    say "installing docker.io (Docker engine from Debian's packages)"
    apt_install docker.io
fi
# debootstrap makes the base image; docker-registry serves the push test; shellcheck checks
# build.sh and this script (tests/images/test_dockerfiles.py). All small.
missing=()
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
if ((${#missing[@]})); then
    say "installing ${missing[*]}"
    apt_install "${missing[@]}"
fi
# Debian's docker-registry package may start its own service where systemd runs; the image
# tests start their own registry on a free loopback port, so nothing here depends on it.

if engine_answers; then
    say "a Docker engine already answers"
else
    # A dockerd ended without cleanup (e.g. when the previous session's processes were killed)
    # leaves its pid file; a new one refuses to start while the file names a live process.
    if [[ -f /var/run/docker.pid ]] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
        rm -f /var/run/docker.pid
    fi
    say "starting dockerd without a bridge (log: $log)"
    # setsid: the engine must outlive this script (CI steps and later sessions use it).
    setsid dockerd --bridge=none --iptables=false --ip-forward=false --ip-masq=false \
        >"$log" 2>&1 < /dev/null &
    echo $! > /tmp/servekit-dockerd.pid
    deadline=$((SECONDS + wait_s))
    until engine_answers; do
        if ((SECONDS >= deadline)); then
            say "ERROR: dockerd did not answer within ${wait_s}s; last lines of $log:"
            tail -n 30 "$log" >&2 || true
            exit 1
        fi
        sleep 1
    done
    say "dockerd answers (pid $(cat /tmp/servekit-dockerd.pid))"
fi

if [[ "${SERVEKIT_SKIP_BASE:-0}" != 1 ]]; then
    # build.sh base decides by itself whether a registry is reachable and skips an existing image.
    "$repo/build.sh" base --if-no-registry
fi
