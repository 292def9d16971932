#!/usr/bin/env bash
# Make linux/arm64 containers and builds run on an amd64 machine, through QEMU user emulation.
#
# Idempotent:
#   1. installs Debian's qemu-user-static (statically linked emulators) and binfmt-support,
#   2. mounts binfmt_misc at /proc/sys/fs/binfmt_misc when it is not mounted,
#   3. registers qemu-aarch64 with the F (fix binary) flag, so the kernel keeps the emulator open
#      and containers, whose file systems do not contain it, can still use it,
#   4. checks that the entry is enabled (build.sh and tests/images/test_arm64.py then run arm64 code).
# Exits non-zero with one line when any step fails: nothing is built for arm64 without it.
#
# Needs root (apt-get, mount, writing /proc/sys/fs/binfmt_misc/register).
set -euo pipefail

say() { printf '[setup-emulation] %s\n' "$*" >&2; }
fail() {
    printf '[setup-emulation] ERROR: %s\n' "$1" >&2
    exit 1
}

binfmt=/proc/sys/fs/binfmt_misc
qemu=/usr/bin/qemu-aarch64-static

if [[ "$(uname -m)" == aarch64 ]]; then
    say "this machine is arm64: no emulator needed"
    exit 0
fi

if [[ ! -x "$qemu" ]]; then
    say "installing qemu-user-static (Debian's package)"
    apt-get update -qq || fail "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-user-static >/dev/null \
        || fail "apt-get install qemu-user-static failed"
fi
[[ -x "$qemu" ]] || fail "$qemu missing after installing qemu-user-static"

if [[ ! -e "$binfmt/register" ]]; then
    say "mounting binfmt_misc at $binfmt"
    mount -t binfmt_misc binfmt_misc "$binfmt" \
        || fail "cannot mount binfmt_misc at $binfmt (needs root and a kernel with CONFIG_BINFMT_MISC)"
fi

entry="$binfmt/qemu-aarch64"
if [[ -e "$entry" ]] && ! grep -q '^flags: .*F' "$entry"; then
    # Registered without F (e.g. by binfmt-support): containers would not find the interpreter.
    say "re-registering qemu-aarch64 with the F flag"
    echo -1 >"$entry"
fi
if [[ ! -e "$entry" ]]; then
    say "registering $qemu for aarch64 ELF binaries (flags OCF)"
    # The ELF header magic and mask of the aarch64 machine type, as in Debian's qemu-user-static.
    printf '%s' ':qemu-aarch64:M::\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:'"$qemu"':OCF' \
        >"$binfmt/register" || fail "registering qemu-aarch64 in $binfmt/register failed"
fi
grep -q '^enabled' "$entry" || fail "binfmt entry $entry is not enabled"
say "arm64 emulation ready ($(head -n1 "$entry"), interpreter $qemu)"
