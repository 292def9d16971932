#!/usr/bin/env bash
# rootfs.sh ROOT MIRROR (./build.sh base --extract): finishes a Debian bookworm tree of another
# architecture that `debootstrap --foreign` began, on this machine, without running that
# architecture's package scripts under emulation.
#
# debootstrap's first stage has downloaded and verified the packages (Release signature, hashes) and
# unpacked the required ones; its second stage would run dpkg and every maintainer script through
# QEMU (about 8 minutes for arm64 on two cores, docs/images.md). Here the remaining packages are
# unpacked with the host's dpkg-deb, what their scripts leave behind is written directly, the
# standard library is byte-compiled by the host's CPython 3.11 (same .pyc format), and the dpkg
# database records every package as installed, so apt works in images built FROM it. Only ldconfig,
# update-ca-certificates and update-alternatives run under emulation. What is not reproduced is
# listed in docs/images.md ("arm64 in minutes").
set -euo pipefail
R="$1" MIRROR="$2"
PY="${SERVEKIT_HOST_PYTHON:?SERVEKIT_HOST_PYTHON: the host CPython 3.11 that compiles the tree}"
step() { printf '==> rootfs: %s\n' "$*" >&2; }

deb_of() { awk -v p="$1" '$1 == p { print $2 }' "$R/debootstrap/debpaths"; }

step "unpacking the other $(wc -w <"$R/debootstrap/base") packages natively"
# debootstrap/base: the package names, separated by spaces.
while read -r pkg; do
    # --keep-directory-symlink: the merged-/usr links (/bin -> usr/bin) that stage one made.
    dpkg-deb --fsys-tarfile "$R$(deb_of "$pkg")" | tar -C "$R" --keep-directory-symlink -xf -
done < <(tr -s ' ' '\n' <"$R/debootstrap/base" | grep .)

step "what the packages' scripts would leave: accounts, alternatives, time zone, shells"
cp "$R/usr/share/base-passwd/passwd.master" "$R/etc/passwd"
cp "$R/usr/share/base-passwd/group.master" "$R/etc/group"
awk -F: '{ print $1 ":*:19000:0:99999:7:::" }' "$R/etc/passwd" >"$R/etc/shadow"
awk -F: '{ print $1 ":*::" }' "$R/etc/group" >"$R/etc/gshadow"
chmod 640 "$R/etc/shadow" "$R/etc/gshadow"
ln -sf /usr/share/zoneinfo/Etc/UTC "$R/etc/localtime"
echo Etc/UTC >"$R/etc/timezone"
cp "$R/usr/share/debianutils/shells" "$R/etc/shells"
cp "$R/usr/share/base-files/dot.profile" "$R/root/.profile"
cp "$R/usr/share/base-files/dot.bashrc" "$R/root/.bashrc"
for f in profile motd; do
    [[ -f "$R/usr/share/base-files/$f" ]] && cp "$R/usr/share/base-files/$f" "$R/etc/$f"
done
# libc-bin's nsswitch.conf (without it glibc asks DNS before /etc/hosts), readline's inputrc,
# base-files' origin link, python3's byte-compile setting, login's subordinate-id files.
cp "$R/usr/share/libc-bin/nsswitch.conf" "$R/etc/nsswitch.conf"
cp "$R/usr/share/readline/inputrc" "$R/etc/inputrc"
ln -sfn debian "$R/etc/dpkg/origins/default"
mkdir -p "$R/etc/python3"
printf '[DEFAULT]\n# how to byte-compile (comma separated: standard, optimize)\nbyte-compile = standard\n' \
    >"$R/etc/python3/debian_config"
: >"$R/etc/environment"
: >"$R/etc/subuid"
: >"$R/etc/subgid"
(cd "$R/usr/share/ca-certificates" && find . -name '*.crt' -printf '%P\n' | sort) >"$R/etc/ca-certificates.conf"
printf 'deb %s bookworm main\n' "$MIRROR" >"$R/etc/apt/sources.list"
# base-files' postinst makes these directories; python3.11's records that it is installed.
(cd "$R" && mkdir -p media mnt opt srv etc/opt var/opt var/mail run/lock \
    usr/local/{bin,etc,games,include,lib/python3.11/dist-packages,man,sbin,share/man,share/ca-certificates,src} \
    var/lib/python && ln -sfn mail var/spool/mail && touch var/lib/python/python3.11_installed)

step "byte-compiling the standard library with $("$PY" -V 2>&1)"
"$PY" -m compileall -q -j 0 -s "$R" -p / "$R/usr/lib/python3.11" "$R/usr/share/python3" >/dev/null

step "recording the $(wc -l <"$R/debootstrap/debpaths") packages in the dpkg database"
adm="$R/var/lib/dpkg"
mkdir -p "$adm/info"
: >"$adm/status"
ctl="$(mktemp -d)"
while read -r pkg deb; do
    f="$R$deb" name="$pkg"
    rm -rf "${ctl:?}"/*
    dpkg-deb -e "$f" "$ctl"
    [[ "$(dpkg-deb -f "$f" Multi-Arch)" == same ]] && name="$pkg:$(dpkg-deb -f "$f" Architecture)"
    {
        dpkg-deb -f "$f" | sed '/^Package:/a Status: install ok installed'
        if [[ -s "$ctl/conffiles" ]]; then
            echo "Conffiles:"
            while read -r c; do
                [[ -f "$R$c" ]] && echo " $c $(md5sum <"$R$c" | cut -d' ' -f1)"
            done <"$ctl/conffiles"
        fi
        echo
    } >>"$adm/status"
    dpkg-deb --fsys-tarfile "$f" | tar -t | sed -e 's|^\./$|/.|' -e 's|^\./|/|' -e 's|\(.\)/$|\1|' >"$adm/info/$name.list"
    for s in "$ctl"/*; do
        [[ "${s##*/}" == control ]] || cp -p "$s" "$adm/info/$name.${s##*/}"
    done
done <"$R/debootstrap/debpaths"
rm -rf "$ctl"
echo 1 >"$adm/info/format"
# dash's diversion of /bin/sh and debianutils' file trigger, as their postinsts record them.
printf '%s\n' /usr/share/man/man1/sh.1.gz /usr/share/man/man1/sh.distrib.1.gz dash /bin/sh /bin/sh.distrib dash \
    >"$adm/diversions"
mkdir -p "$adm/triggers"
echo '/usr/share/debianutils/shells.d debianutils/noawait' >"$adm/triggers/File"
: >"$adm/triggers/Unincorp"

step "ldconfig, update-ca-certificates and update-alternatives (under emulation)"
# The alternatives the packages' postinsts register (mawk, debianutils, util-linux, tar, bash); the
# script is expanded inside the chroot.
# shellcheck disable=SC2016
chroot "$R" /bin/sh -ec '
ldconfig
update-ca-certificates --fresh >/dev/null
m=/usr/share/man
ua() { update-alternatives --quiet --install "$@"; }
ua /usr/bin/awk awk /usr/bin/mawk 5 --slave $m/man1/awk.1.gz awk.1.gz $m/man1/mawk.1.gz \
    --slave /usr/bin/nawk nawk /usr/bin/mawk --slave $m/man1/nawk.1.gz nawk.1.gz $m/man1/mawk.1.gz
set -- /usr/bin/which which /usr/bin/which.debianutils 0 --slave $m/man1/which.1.gz which.1.gz $m/man1/which.debianutils.1.gz
for l in de es fr it ja pl sl; do
    set -- "$@" --slave $m/$l/man1/which.1.gz which.${l}1.gz $m/$l/man1/which.debianutils.1.gz
done
ua "$@"
ua /usr/bin/pager pager /bin/more 50 --slave $m/man1/pager.1.gz pager.1.gz $m/man1/more.1.gz
ua /usr/sbin/rmt rmt /usr/sbin/rmt-tar 50 --slave $m/man8/rmt.8.gz rmt.8.gz $m/man8/rmt-tar.8.gz
ua $m/man7/builtins.7.gz builtins.7.gz $m/man7/bash-builtins.7.gz 10
'
# debootstrap's own files (its second stage removes them); build.sh then adds the CA bundle.
rm -rf "$R/debootstrap"
# Where debootstrap detects a container it links proc to the host's /proc for its second stage,
# which then mounts one; a container runtime must find an ordinary directory there.
if [[ -L "$R/proc" ]]; then
    rm -f "$R/proc"
    mkdir -m 555 "$R/proc"
fi
