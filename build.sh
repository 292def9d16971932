#!/usr/bin/env bash
# servekit's build tool: base image, serving images, push, tests.
# Run ./build.sh --help for the commands; docs/images.md has the details.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEFAULT_BASE_IMAGE="python:3.11-slim-bookworm"
LOCAL_BASE_IMAGE="servekit/base:bookworm"
FRAMEWORKS=(sklearn pytorch tensorflow)
# The only PyTorch release this project installs: its CPU wheel (no CUDA) is what the images ship.
TORCH_VERSION_DEFAULT="2.13.0+cpu"
TORCH_INDEX_URL_DEFAULT="https://download.pytorch.org/whl/cpu"
# Platforms build.sh can build for; a machine of the other architecture needs QEMU emulation
# (.ci/setup-emulation.sh registers it).
PLATFORMS=(linux/amd64 linux/arm64)

usage() {
    cat <<'EOF'
Usage: ./build.sh COMMAND [OPTIONS]

Commands:
  build [sklearn|pytorch|tensorflow|all ...]   build serving images (default: all)
  build --dockerfile FILE --name NAME          build any Dockerfile (e.g. a custom framework); the
        [--context DIR]                        build context is the Dockerfile's directory unless --context
  push IMAGE --to REGISTRY/REPO[:TAG]          tag and push; logs in to ECR first when the
                                               registry is *.dkr.ecr.*.amazonaws.com
  base [--force] [--platform P]                make servekit/base:bookworm (another platform's:
                                               servekit/base:bookworm-ARCH) from Debian packages
                                               (debootstrap) for machines with no registry
  setup                                        install the Python environment, Docker engine, base and images
  test [PYTEST ARGS...]                        setup, then ruff, mypy and the whole test suite (python -m pytest)
  demo                                         run the README's end-to-end example
  bench [--quick] [python -m bench ARGS...]    side-by-side benchmarks against AWS's stack (bench/README.md)
  -h, --help                                   this help

build options:
  --tag TAG              image tag (default: latest; latest-nomms with --no-mms)
  --base-image IMAGE     base image (default: python:3.11-slim-bookworm when it can be
                         pulled or is present, else servekit/base:bookworm)
  --ca-bundle FILE       extra CA certificates (PEM) trusted inside the image, at build time
                         (apt, pip) and at run time; for TLS-intercepting proxies
  --no-mms               leave the multi-model-server compatibility engine and Java out
  --platform LIST        linux/amd64, linux/arm64 or both, comma-separated: one image per
                         platform, tagged TAG-ARCH (e.g. latest-arm64); another architecture
                         than the machine's runs under QEMU (.ci/setup-emulation.sh) and needs
                         its base (./build.sh base --platform); a framework without wheels for
                         a platform is refused. push --platform joins them under one tag
  --gpu                  pytorch/tensorflow with CUDA (PyPI's CUDA builds; gigabytes), tag
                         latest-gpu; linux/amd64 only
  --user NAME[:UID]      run the image as this non-root user (uid default 1000), tag
                         latest-nonroot; see docs/images.md for what changes
  --torch-wheels DIR     install PyTorch from the wheel(s) in DIR (bind-mounted, no layer
                         keeps them); default: $PIP_FIND_LINKS when it holds torch-*+cpu*.whl
  --torch-index-url URL  PyTorch index (default https://download.pytorch.org/whl/cpu)
  --no-doctor            skip the smoke check: servekit doctor (docs/doctor.md) runs every image
                         built here as SageMaker runs it, with a tiny model made inside the image
  --model-data PATH      with --dockerfile: the model doctor runs the image with (without it,
  --sample CT:FILE       doctor is not run on it and build.sh says so); --sample: one request body
  --cross                another platform's sklearn --no-mms image with its Python packages
                         installed here for that platform (pip --platform, wheels only) and the
                         base's Debian files as they are: minutes instead of a quarter hour under
                         QEMU; anything it cannot install exactly is refused (docs/images.md)
  --no-cache             build without the layer cache
  --network MODE         build network (default host: works with or without a bridge)
  --progress MODE        BuildKit progress output: plain (default), auto, tty, quiet

push options:
  --to REGISTRY/REPO[:TAG]   destination (TAG defaults to IMAGE's tag)
  --region REGION            ECR region (default: taken from the registry host)
  --platform LIST            push IMAGE-ARCH for each platform as TAG-ARCH, then a manifest list
                             TAG naming them all (docker manifest create/push)

base options:
  --force                rebuild even if servekit/base:bookworm exists
  --if-no-registry       do nothing when the default base image can be pulled
  --ca-bundle FILE       CA bundle copied into the base (default /etc/ssl/certs/ca-certificates.crt)
  --mirror URL           Debian mirror (default http://deb.debian.org/debian)
  --extract              another platform's base without running its package scripts under
                         QEMU: unpacked and set up here (docker/cross/rootfs.sh, ~1 min instead
                         of ~8); labelled com.servekit.base=extracted (docs/images.md)

Environment: SERVEKIT_DOCKER (docker client to use), SERVEKIT_PULL_TIMEOUT_S (registry probe, 20),
SERVEKIT_ARM64=sklearn|all (test: also set up emulation and build and test the arm64 images).
EOF
}

say() { printf '==> %s\n' "$*" >&2; }
die() {
    printf 'build.sh: error: %s\n' "$1" >&2
    exit "${2:-1}"
}

# ---------------------------------------------------------------------------------------------
# Docker client. The Dockerfiles need BuildKit (RUN --mount). Clients from 23.0 on build with
# BuildKit only through the buildx plugin; older clients (Debian's docker.io 20.10) have it
# built in. Pick the first client that can do it.
# ---------------------------------------------------------------------------------------------
DOCKER=()
pick_docker() {
    ((${#DOCKER[@]})) && return 0
    local candidates=()
    [[ -n "${SERVEKIT_DOCKER:-}" ]] && candidates+=("$SERVEKIT_DOCKER")
    candidates+=(docker /usr/bin/docker)
    local c version major
    for c in "${candidates[@]}"; do
        command -v "$c" >/dev/null 2>&1 || continue
        if "$c" buildx version >/dev/null 2>&1; then
            DOCKER=("$c")
            return 0
        fi
        version="$("$c" version --format '{{.Client.Version}}' 2>/dev/null || true)"
        major="${version%%.*}"
        if [[ "$major" =~ ^[0-9]+$ ]] && ((major < 23)); then
            DOCKER=("$c")
            return 0
        fi
    done
    die "no docker client with BuildKit found: install the buildx plugin (docker-buildx) or Debian's docker.io; or set SERVEKIT_DOCKER"
}

docker_engine_ok() {
    command -v docker >/dev/null 2>&1 || return 1
    timeout 20 docker info >/dev/null 2>&1
}

require_engine() {
    docker_engine_ok || die "no Docker engine answers (docker info). Start one: bash .ci/setup-docker.sh"
}

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

# Can the default base image be had from a registry? Present locally counts; otherwise one pull
# with a short timeout (on machines without a registry it fails at once on DNS).
default_base_available() {
    image_exists "$DEFAULT_BASE_IMAGE" && return 0
    timeout "${SERVEKIT_PULL_TIMEOUT_S:-20}" docker pull -q "$DEFAULT_BASE_IMAGE" >/dev/null 2>&1
}

human_size() {
    awk -v b="$1" 'BEGIN { split("B KB MB GB TB", u); i = 1; while (b >= 1000 && i < 5) { b /= 1000; i++ } printf (i == 1 ? "%d %s" : "%.2f %s"), b, u[i] }'
}

# ---------------------------------------------------------------------------------------------
# platforms
# ---------------------------------------------------------------------------------------------
host_arch() {
    case "$(uname -m)" in
        x86_64 | amd64) echo amd64 ;;
        aarch64 | arm64) echo arm64 ;;
        *) uname -m ;;
    esac
}

# platform_arch linux/arm64 -> arm64; anything build.sh cannot build is refused (exit 2).
platform_arch() {
    local p
    for p in "${PLATFORMS[@]}"; do
        [[ "$1" == "$p" ]] && { echo "${p#linux/}"; return 0; }
    done
    die "unsupported platform $1 (supported: ${PLATFORMS[*]})" 2
}

# The local base image for an architecture: the host's keeps its old name.
local_base_for() {
    if [[ "$1" == "$(host_arch)" ]]; then
        echo "$LOCAL_BASE_IMAGE"
    else
        echo "$LOCAL_BASE_IMAGE-$1"
    fi
}

# Running ARCH's binaries here: natively, or through a registered binfmt_misc QEMU interpreter.
require_emulation() {
    local arch="$1" entry
    [[ "$arch" == "$(host_arch)" ]] && return 0
    case "$arch" in
        arm64) entry=/proc/sys/fs/binfmt_misc/qemu-aarch64 ;;
        amd64) entry=/proc/sys/fs/binfmt_misc/qemu-x86_64 ;;
        *) die "no emulator known for $arch" 2 ;;
    esac
    if ! { [[ -r "$entry" ]] && grep -q '^enabled' "$entry" && grep -q '^flags: .*F' "$entry"; }; then
        die "linux/$arch on this $(host_arch) machine needs QEMU emulation, which is not registered ($entry): run bash .ci/setup-emulation.sh as root"
    fi
}

image_arch() { docker image inspect -f '{{.Architecture}}' "$1" 2>/dev/null; }

# --extract and --cross byte-compile another architecture's Python files with servekit's .venv,
# whose CPython must be the images' 3.11 (the .pyc format changes between minor versions).
require_host_python311() {
    VENV_PY="${SERVEKIT_VENV:-$REPO/.venv}/bin/python"
    [[ -x "$VENV_PY" ]] || die "$1: no $VENV_PY (./build.sh setup makes it)" 2
    local version
    version="$("$VENV_PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    [[ "$version" == 3.11 ]] \
        || die "$1: $VENV_PY is Python $version, the images' is 3.11: .pyc files compiled here would not load there" 2
}

# ---------------------------------------------------------------------------------------------
# base
# ---------------------------------------------------------------------------------------------
# Remove a debootstrap tree; a second stage that failed may leave /proc or /sys mounted in it,
# and rm must never walk into those.
remove_rootfs() {
    local m
    while read -r m; do
        umount -l "$m" 2>/dev/null || true
    done < <(awk -v r="$1/" 'index($2, r) == 1 { print $2 }' /proc/mounts | sort -r)
    rm -rf --one-file-system "$1"
}

# An image of another architecture from a file-system tree. `docker import --platform` is ignored by
# engines without experimental features (the image would say amd64), so the tree is added to an
# empty image by a one-line build for that platform, which labels it correctly.
image_from_tree() {
    local tree="$1" name="$2" arch="$3" how="$4" ctx
    ctx="$(mktemp -d /tmp/servekit-base-ctx.XXXXXX)"
    say "making $name (linux/$arch) from the tree"
    tar -C "$tree" --one-file-system -cf "$ctx/rootfs.tar" .
    cat >"$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
ADD rootfs.tar /
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8
CMD ["/bin/bash"]
DOCKERFILE
    echo "LABEL com.servekit.base=$how" >>"$ctx/Dockerfile"
    pick_docker
    local rc=0
    DOCKER_BUILDKIT=1 "${DOCKER[@]}" build --network host --quiet --platform "linux/$arch" \
        -t "$name" "$ctx" >/dev/null || rc=$?
    rm -rf "$ctx"
    ((rc == 0)) || die "base: building $name from the $arch tree failed"
}

cmd_base() {
    local force=0 if_no_registry=0 ca="/etc/ssl/certs/ca-certificates.crt"
    local mirror="http://deb.debian.org/debian" name="" platform="" extract=0
    while (($#)); do
        case "$1" in
            --force) force=1 ;;
            --extract) extract=1 ;;
            --platform) platform="${2:?--platform needs linux/amd64 or linux/arm64}"; shift ;;
            --if-no-registry) if_no_registry=1 ;;
            --ca-bundle) ca="${2:?--ca-bundle needs a file}"; shift ;;
            --mirror) mirror="${2:?--mirror needs a URL}"; shift ;;
            --name) name="${2:?--name needs an image name}"; shift ;;
            -h | --help) usage; exit 0 ;;
            *) die "base: unknown option $1 (see --help)" 2 ;;
        esac
        shift
    done
    local arch
    arch="$(host_arch)"
    if [[ -n "$platform" ]]; then
        [[ "$platform" != *,* ]] || die "base: one --platform at a time" 2
        arch="$(platform_arch "$platform")"
    fi
    [[ -n "$name" ]] || name="$(local_base_for "$arch")"
    if ((extract)); then
        [[ "$arch" != "$(host_arch)" ]] \
            || die "base: --extract is for another architecture than this machine's ($arch is native: nothing runs under QEMU)" 2
        require_host_python311 "base --extract"
    fi
    require_engine
    if ((!force)) && image_exists "$name"; then
        say "base image $name exists; skipping (use --force to remake it)"
        return 0
    fi
    if ((if_no_registry)) && [[ "$arch" == "$(host_arch)" ]] && default_base_available; then
        say "registry reachable ($DEFAULT_BASE_IMAGE); no local base image needed"
        return 0
    fi
    command -v debootstrap >/dev/null 2>&1 \
        || die "debootstrap is missing: apt-get install -y debootstrap"
    [[ -r "$ca" ]] || die "CA bundle $ca not readable (pass --ca-bundle FILE)"
    require_emulation "$arch"
    local foreign=0
    [[ "$arch" != "$(host_arch)" ]] && foreign=1
    local rootfs
    rootfs="$(mktemp -d /tmp/servekit-rootfs.XXXXXX)"
    # shellcheck disable=SC2064  # expand now: the path is fixed
    trap "remove_rootfs '$rootfs'" EXIT
    local t0=$SECONDS
    local log=/tmp/servekit-debootstrap-$arch.log
    say "debootstrap bookworm $arch (minbase + python3, python3-venv, ca-certificates) into $rootfs"
    # Another architecture: the first stage only unpacks (--foreign); the second runs the
    # packages' scripts inside the tree, each arm64 binary through the registered QEMU
    # interpreter (its F flag makes it usable inside the chroot without copying it there).
    local stage1=(--variant=minbase "--arch=$arch" "--include=python3,python3-venv,ca-certificates")
    ((foreign)) && stage1+=(--foreign)
    debootstrap "${stage1[@]}" bookworm "$rootfs" "$mirror" >"$log" 2>&1 \
        || { tail -n 20 "$log" >&2; die "debootstrap ($arch) failed (log $log)"; }
    if ((extract)); then
        say "second stage on this machine (docker/cross/rootfs.sh): only a few commands run under QEMU"
        SERVEKIT_HOST_PYTHON="$VENV_PY" bash "$REPO/docker/cross/rootfs.sh" "$rootfs" "$mirror" \
            || die "base --extract ($arch): finishing the tree failed (see above; debootstrap's log $log)"
    elif ((foreign)); then
        say "second stage under emulation (slow: every binary runs through QEMU)"
        chroot "$rootfs" /debootstrap/debootstrap --second-stage >>"$log" 2>&1 \
            || { tail -n 20 "$log" >&2; die "debootstrap second stage ($arch, emulated) failed (log $log)"; }
    fi
    # The host's CA bundle: pip and apt inside builds go through the same TLS-intercepting proxy
    # the host trusts (see docs/images.md).
    cp "$ca" "$rootfs/etc/ssl/certs/ca-certificates.crt"
    # Keep the image small: package caches and lists are refetched by any build that needs them.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    if ((foreign)); then
        local how=debootstrap
        ((extract)) && how=extracted
        image_from_tree "$rootfs" "$name" "$arch" "$how"
    else
        say "importing as $name"
        tar -C "$rootfs" --one-file-system -c . | docker import \
            --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            --change 'ENV LANG=C.UTF-8' \
            --change 'CMD ["/bin/bash"]' \
            - "$name" >/dev/null
    fi
    remove_rootfs "$rootfs"
    trap - EXIT
    if [[ "$(image_arch "$name")" != "$arch" ]]; then
        local wrong
        wrong="$(image_arch "$name")"
        docker rmi "$name" >/dev/null 2>&1 || true
        die "base: $name came out as $wrong, not $arch; removed it"
    fi
    say "base image $name made in $((SECONDS - t0)) s ($(human_size "$(docker image inspect -f '{{.Size}}' "$name")"))"
}

# ---------------------------------------------------------------------------------------------
# build
# ---------------------------------------------------------------------------------------------
STAGED=()
cleanup_staged() {
    local f
    for f in "${STAGED[@]}"; do rm -f "$f"; done
    STAGED=()
    remove_prebuilt
}

# docker/prebuilt holds one --cross build's venv.tar (~0.5 GB) and wheel; no later build context may carry them.
remove_prebuilt() { rm -rf "$REPO/docker/prebuilt/venv.tar" "$REPO/docker/prebuilt/dist"; }

# --cross: the sklearn --no-mms image's virtualenv and servekit's wheel, made here for BUILD_ARCH
# (Dockerfile.sklearn's DEPS=prebuilt stages add them; docs/images.md, "arm64 in minutes").
# Every file in both gets one modification time (SOURCE_DATE_EPOCH, unless set: 1980-01-01, the
# earliest a wheel's zip holds), so the same sources make the same bytes and the image's layers
# stay cached from one build to the next (https://reproducible-builds.org/specs/source-date-epoch/).
CROSS_EPOCH="${SOURCE_DATE_EPOCH:-315532800}"
stage_prebuilt() {
    local base="$1" out="$REPO/docker/prebuilt" work cid
    work="$(mktemp -d /tmp/servekit-cross.XXXXXX)"
    mkdir -p "$out/dist" "$work/wheels" "$work/src"
    # pip and setuptools as the base's `python3 -m venv` installs them (Debian's python3-pip-whl).
    cid="$(docker create --platform "linux/$BUILD_ARCH" "$base" /bin/true)" || die "--cross: cannot create a container of $base"
    if ! docker cp "$cid:/usr/share/python-wheels/." "$work/wheels/" >/dev/null 2>&1; then
        docker rm "$cid" >/dev/null
        rm -rf "$work"
        die "--cross: $base has no /usr/share/python-wheels (Debian's python3-venv): use servekit's base (./build.sh base --platform linux/$BUILD_ARCH --extract)"
    fi
    docker rm "$cid" >/dev/null
    "$VENV_PY" "$REPO/docker/pyproject_requirements.py" "$REPO/pyproject.toml" sklearn "" >"$work/requirements.txt"
    say "--cross: installing the requirements for linux/$BUILD_ARCH here (pip --platform, wheels only)"
    "$VENV_PY" "$REPO/docker/cross/prebuilt_venv.py" --arch "$BUILD_ARCH" --requirements "$work/requirements.txt" \
        --wheels "$work/wheels" --out "$out/venv.tar" --epoch "$CROSS_EPOCH" || { rm -rf "$work"; die "--cross: the linux/$BUILD_ARCH venv could not be made (see above)"; }
    # servekit's own wheel (pure Python), from a copy of what the Docker context holds (.dockerignore),
    # so that setuptools' build/ and *.egg-info stay out of the checkout.
    cp -r "$REPO"/{pyproject.toml,README.md,LICENSE,handlers,serve,harness} "$work/src/"
    find "$work/src" -name __pycache__ -prune -exec rm -rf {} +
    SOURCE_DATE_EPOCH="$CROSS_EPOCH" "$VENV_PY" -m pip wheel --quiet --disable-pip-version-check --no-build-isolation --no-deps \
        --wheel-dir "$out/dist" "$work/src" || { rm -rf "$work"; die "--cross: building servekit's wheel failed"; }
    rm -rf "$work"
}

# The wheel-file suffix of an architecture (manylinux tags).
wheel_machine() { [[ "$1" == arm64 ]] && echo aarch64 || echo x86_64; }

# torch wheel dir: the first $PIP_FIND_LINKS entry that holds the CPU wheel for ARCH.
find_torch_wheel_dir() {
    local d arch="$1"
    local IFS=' '
    for d in ${PIP_FIND_LINKS:-}; do
        d="${d#file://}"
        if [[ -d "$d" ]] && compgen -G "$d/torch-${TORCH_VERSION_DEFAULT}-*_$(wheel_machine "$arch").whl" >/dev/null; then
            printf '%s
' "$d"
            return 0
        fi
    done
    return 1
}

# pip on this machine, to ask an index which wheels exist for another platform.
HOST_PIP=()
host_pip() {
    ((${#HOST_PIP[@]})) && return 0
    local py
    for py in "$REPO/.venv/bin/python" python3; do
        if command -v "$py" >/dev/null 2>&1 && "$py" -m pip --version >/dev/null 2>&1; then
            HOST_PIP=("$py" -m pip)
            return 0
        fi
    done
    die "cannot check which wheels exist for another platform: no pip on this machine (python3 -m pip)"
}

# The versions of a package the index offers as CPython 3.11 wheels for ARCH (blank: none).
index_versions() {
    local arch="$1" package="$2"
    shift 2
    local m g tags=()
    m="$(wheel_machine "$arch")"
    # Every manylinux tag the images' Debian bookworm (glibc 2.36) can install: pip takes the
    # --platform tags literally.
    for g in $(seq 17 36); do tags+=(--platform "manylinux_2_${g}_$m"); done
    host_pip
    "${HOST_PIP[@]}" index versions "$package" "$@" --python-version 3.11 --implementation cp --abi cp311 \
        --only-binary=:all: --platform "manylinux2014_$m" "${tags[@]}" 2>/dev/null \
        | sed -n 's/^Available versions: //p'
}

# Refuse, with one line, a framework whose wheels do not exist for ARCH (pip would otherwise build
# from source, pick another package or version, or fail an hour later under emulation). Only
# checked for a platform other than linux/amd64, where every image is known to build.
check_framework_wheels() {
    local fw="$1" arch="$2"
    [[ "$arch" == amd64 ]] && return 0
    case "$fw" in
        sklearn)
            [[ -n "$(index_versions "$arch" scikit-learn)" ]] \
                || die "sklearn: no scikit-learn wheel for linux/$arch and CPython 3.11 on the package index: not building it"
            ;;
        tensorflow)
            # pyproject.toml installs tensorflow-cpu on x86_64 only: it has no arm64 wheels, and the
            # plain tensorflow wheel is the CPU build on aarch64.
            [[ -n "$(index_versions "$arch" tensorflow)" ]] \
                || die "tensorflow: no tensorflow wheel for linux/$arch and CPython 3.11 on the package index (tensorflow-cpu has none for arm64): not building it"
            ;;
        pytorch)
            if [[ -n "$TORCH_WHEELS" ]]; then
                compgen -G "$TORCH_WHEELS/torch-${TORCH_VERSION_DEFAULT}-*_$(wheel_machine "$arch").whl" >/dev/null \
                    || die "pytorch: no torch-${TORCH_VERSION_DEFAULT}-*_$(wheel_machine "$arch").whl in $TORCH_WHEELS for linux/$arch: not building it"
            else
                [[ -n "$TORCH_INDEX_URL" ]] \
                    || die "pytorch: linux/$arch needs a torch CPU wheel source: --torch-index-url URL or --torch-wheels DIR" 2
                # PyPI's own torch $TORCH_VERSION_DEFAULT for aarch64 is a CUDA build: only the CPU
                # index (or a local wheel) has the +cpu build, so the exact local version is asked for.
                [[ " $(index_versions "$arch" torch --index-url "$TORCH_INDEX_URL" | tr -d ,) " == *" $TORCH_VERSION_DEFAULT "* ]] \
                    || die "pytorch: torch $TORCH_VERSION_DEFAULT for linux/$arch is not offered by $TORCH_INDEX_URL (or it cannot be reached): not building it; pass --torch-wheels DIR holding torch-${TORCH_VERSION_DEFAULT}-*_$(wheel_machine "$arch").whl"
            fi
            ;;
    esac
}

# Stage files into the build context (docker/ca, docker/wheels); hard links where possible.
stage_file() {
    local src dest="$2"
    # Resolve symlinks: a link inside the build context would point outside it.
    src="$(readlink -f "$1")"
    ln -f "$src" "$dest" 2>/dev/null || cp -f "$src" "$dest"
    STAGED+=("$dest")
}

SUMMARY=()
build_one() {
    # build_one NAME DOCKERFILE FRAMEWORK(or "") TAG BASE WITH_MMS CONTEXT
    local name="$1" dockerfile="$2" framework="$3" tag="$4" base="$5" with_mms="$6" context="$7"
    local image="$name:$tag"
    local args=(build --network "$NETWORK" --progress "$PROGRESS" -f "$dockerfile" -t "$image"
        --platform "linux/$BUILD_ARCH" --build-arg "BASE_IMAGE=$base" --build-arg "WITH_MMS=$with_mms"
        --build-arg "SERVE_USER=$SERVE_USER" --build-arg "SERVE_UID=$SERVE_UID" --build-arg "ACCELERATOR=$ACCELERATOR")
    ((NO_CACHE)) && args+=(--no-cache)
    if ((CROSS)); then
        stage_prebuilt "$base"
        args+=(--build-arg DEPS=prebuilt)
    fi
    if [[ "$framework" == pytorch && "$ACCELERATOR" == gpu ]]; then
        # PyPI's torch of the same release is the CUDA build (with its nvidia-* wheels).
        say "pytorch: installing torch ${TORCH_VERSION_DEFAULT%+cpu} from PyPI (the CUDA build)"
        args+=(--build-arg "TORCH_VERSION=${TORCH_VERSION_DEFAULT%+cpu}" --build-arg "TORCH_INDEX_URL=")
    elif [[ "$framework" == pytorch ]]; then
        args+=(--build-arg "TORCH_VERSION=$TORCH_VERSION_DEFAULT")
        if [[ -n "$TORCH_WHEELS" ]]; then
            local w n=0
            for w in "$TORCH_WHEELS"/torch-*_"$(wheel_machine "$BUILD_ARCH")".whl; do
                [[ -e "$w" ]] || continue
                stage_file "$w" "$REPO/docker/wheels/$(basename "$w")"
                n=$((n + 1))
            done
            ((n)) || die "no torch-*_$(wheel_machine "$BUILD_ARCH").whl (linux/$BUILD_ARCH) in $TORCH_WHEELS"
            say "pytorch: installing from local wheel(s) in $TORCH_WHEELS (bind mount, no layer)"
            args+=(--build-arg "TORCH_INDEX_URL=")
        else
            say "pytorch: installing torch $TORCH_VERSION_DEFAULT from $TORCH_INDEX_URL"
            args+=(--build-arg "TORCH_INDEX_URL=$TORCH_INDEX_URL")
        fi
    fi
    say "building $image for linux/$BUILD_ARCH from $dockerfile (context $context, base $base, mms $with_mms)"
    local t0=$SECONDS rc=0
    (cd "$context" && DOCKER_BUILDKIT=1 "${DOCKER[@]}" "${args[@]}" .) || rc=$?
    local secs=$((SECONDS - t0))
    # The wheels are for this image only: the next image's build context must not carry them.
    rm -f "$REPO"/docker/wheels/*.whl
    remove_prebuilt
    if ((rc)); then
        SUMMARY+=("$image|FAILED|-|${secs}s")
        return "$rc"
    fi
    # Never hand out an image of another architecture than the one asked for.
    [[ "$(image_arch "$image")" == "$BUILD_ARCH" ]] \
        || die "$image came out as $(image_arch "$image"), not $BUILD_ARCH (platform not honoured by this engine)"
    local bytes
    bytes="$(docker image inspect -f '{{.Size}}' "$image")"
    say "built $image in ${secs}s ($(human_size "$bytes"))"
    if ! doctor_smoke "$image" "$framework"; then
        SUMMARY+=("$image|DOCTOR|$(human_size "$bytes")|${secs}s")
        return 1
    fi
    SUMMARY+=("$image|ok|$(human_size "$bytes")|${secs}s")
}

# check_cross WITH_MMS "ARCHS" DOCKERFILE TARGET...: what --cross can make, or one line why not.
check_cross() {
    local with_mms="$1" archs="$2" dockerfile="$3" target arch
    shift 3
    [[ -z "$dockerfile" ]] || die "build: --cross builds servekit's sklearn image, not --dockerfile" 2
    for target in "$@"; do
        [[ "$target" == sklearn ]] \
            || die "build: --cross: only sklearn's dependencies are all wheels for every platform; build $target without --cross (under QEMU)" 2
    done
    [[ "$with_mms" == false ]] \
        || die "build: --cross needs --no-mms: sagemaker-inference has no wheel (sdist only) and Java would be installed under QEMU" 2
    for arch in $archs; do
        [[ "$arch" != "$(host_arch)" ]] \
            || die "build: --cross is for another architecture than this machine's; linux/$arch builds natively without it" 2
    done
    require_host_python311 "build --cross"
}

# doctor_smoke IMAGE FRAMEWORK(or ""): run the image as SageMaker would (servekit doctor,
# docs/doctor.md) with a tiny model made inside it by docker/smoke_model.py; sklearn also as an MME
# container. Returns non-zero when a check fails; says so, loudly, when it cannot run.
doctor_smoke() {
    local image="$1" framework="$2" doctor="$REPO/.venv/bin/servekit"
    ((DOCTOR)) || { say "doctor: not run on $image (--no-doctor)"; return 0; }
    if [[ "$BUILD_ARCH" != "$(host_arch)" ]]; then
        say "doctor: NOT RUN on $image (linux/$BUILD_ARCH under emulation): run servekit doctor $image --instance-type ml.c7g.large ..."
        return 0
    fi
    [[ -x "$doctor" ]] || { say "doctor: NOT RUN on $image: no $doctor (./build.sh setup makes it)"; return 0; }
    local instance=ml.m5.large
    [[ "$ACCELERATOR" == gpu ]] && instance=ml.g5.xlarge
    if [[ -z "$framework" ]]; then
        if [[ -z "$DOCTOR_MODEL_DATA" ]]; then
            say "doctor: not run on $image: give --model-data DIR|model.tar.gz [--sample CONTENT_TYPE:FILE] to check it as SageMaker runs it"
            return 0
        fi
        local extra=()
        [[ -n "$DOCTOR_SAMPLE" ]] && extra=(--sample "$DOCTOR_SAMPLE")
        "$doctor" doctor "$image" --instance-type "$instance" --model-data "$DOCTOR_MODEL_DATA" "${extra[@]}"
        return
    fi
    local work rc=0
    work="$(mktemp -d)"
    chmod 755 "$work"
    cp "$REPO/docker/smoke_model.py" "$work/"
    "${DOCKER[@]}" run --rm --network host --user 0 --entrypoint python -v "$work:/smoke" "$image" \
        /smoke/smoke_model.py "$framework" /smoke >"$work/model.log" 2>&1 \
        || { tail -n 20 "$work/model.log" >&2; rm -rf "$work"; die "doctor: could not make a $framework model inside $image"; }
    say "doctor: $image as SageMaker runs it on $instance (single model$([[ "$framework" == sklearn ]] && echo ', then MME'))"
    "$doctor" doctor "$image" --instance-type "$instance" --model-data "$work/model" \
        --sample "application/json:$work/sample.json" || rc=$?
    if ((rc == 0)) && [[ "$framework" == sklearn ]]; then
        "$doctor" doctor "$image" --instance-type "$instance" --model-data "$work/model" \
            --sample "application/json:$work/sample.json" --mme || rc=$?
    fi
    rm -rf "$work"
    return "$rc"
}

print_summary() {
    ((${#SUMMARY[@]})) || return 0
    printf '\n%-40s %-7s %-10s %s\n' IMAGE STATUS SIZE TIME
    local row image status size secs
    for row in "${SUMMARY[@]}"; do
        IFS='|' read -r image status size secs <<<"$row"
        printf '%-40s %-7s %-10s %s\n' "$image" "$status" "$size" "$secs"
    done
}

# The base image for ARCH: --base-image (its architecture checked), else for the host the public
# slim image or the local debootstrap base, for another architecture the local base made by
# ./build.sh base --platform (a registry's multi-arch tag would hold one architecture at a time here).
pick_base() {
    local arch="$1" base="$2" dockerfile="$3" local_base
    local_base="$(local_base_for "$arch")"
    if [[ -z "$base" ]]; then
        if [[ "$arch" != "$(host_arch)" ]]; then
            image_exists "$local_base" \
                || die "no linux/$arch base image $local_base: run ./build.sh base --platform linux/$arch (or pass --base-image with a linux/$arch image)"
            base="$local_base"
        elif default_base_available; then
            base="$DEFAULT_BASE_IMAGE"
        elif image_exists "$local_base"; then
            base="$local_base"
            say "no registry reachable for $DEFAULT_BASE_IMAGE: using the local base $local_base"
        elif [[ -n "$dockerfile" ]]; then
            # Another Dockerfile may not use BASE_IMAGE at all (e.g. one built FROM a servekit image).
            say "note: cannot pull $DEFAULT_BASE_IMAGE and no $local_base; passing BASE_IMAGE=$DEFAULT_BASE_IMAGE anyway"
            echo "$DEFAULT_BASE_IMAGE"
            return 0
        else
            die "cannot pull $DEFAULT_BASE_IMAGE and $local_base does not exist: run ./build.sh base first (or pass --base-image)"
        fi
    fi
    if image_exists "$base" && [[ "$(image_arch "$base")" != "$arch" ]]; then
        die "base image $base is $(image_arch "$base"), not $arch: pass a linux/$arch --base-image (./build.sh base --platform linux/$arch makes one)" 2
    fi
    echo "$base"
}

cmd_build() {
    local targets=() tag="" base="" ca="" with_mms=true dockerfile="" name="" context=""
    NO_CACHE=0 NETWORK=host PROGRESS=plain TORCH_WHEELS="" TORCH_INDEX_URL="$TORCH_INDEX_URL_DEFAULT"
    local torch_source_given=0 platforms="" gpu=0 user=""
    CROSS=0
    DOCTOR=1 DOCTOR_MODEL_DATA="" DOCTOR_SAMPLE=""
    while (($#)); do
        case "$1" in
            sklearn | pytorch | tensorflow) targets+=("$1") ;;
            all) targets+=("${FRAMEWORKS[@]}") ;;
            --tag) tag="${2:?--tag needs a value}"; shift ;;
            --base-image) base="${2:?--base-image needs an image}"; shift ;;
            --ca-bundle) ca="${2:?--ca-bundle needs a file}"; shift ;;
            --no-mms) with_mms=false ;;
            --platform) platforms="${2:?--platform needs linux/amd64, linux/arm64 or both, comma-separated}"; shift ;;
            --gpu) gpu=1 ;;
            --user) user="${2:?--user needs NAME[:UID]}"; shift ;;
            --torch-wheels) TORCH_WHEELS="${2:?--torch-wheels needs a directory}"; torch_source_given=1; shift ;;
            --torch-index-url) TORCH_INDEX_URL="${2:?--torch-index-url needs a URL}"; torch_source_given=1; shift ;;
            --dockerfile) dockerfile="${2:?--dockerfile needs a file}"; shift ;;
            --name) name="${2:?--name needs an image name}"; shift ;;
            --context) context="${2:?--context needs a directory}"; shift ;;
            --no-doctor) DOCTOR=0 ;;
            --model-data) DOCTOR_MODEL_DATA="${2:?--model-data needs a directory, model.tar.gz or s3:// URL}"; shift ;;
            --sample) DOCTOR_SAMPLE="${2:?--sample needs CONTENT_TYPE:FILE}"; shift ;;
            --cross) CROSS=1 ;;
            --no-cache) NO_CACHE=1 ;;
            --network) NETWORK="${2:?--network needs a mode}"; shift ;;
            --progress) PROGRESS="${2:?--progress needs a mode}"; shift ;;
            -h | --help) usage; exit 0 ;;
            *) die "build: unknown argument $1 (see --help)" 2 ;;
        esac
        shift
    done
    if [[ -n "$dockerfile" || -n "$name" ]]; then
        [[ -n "$dockerfile" && -n "$name" ]] || die "build: --dockerfile and --name go together" 2
        ((${#targets[@]} == 0)) || die "build: give either framework names or --dockerfile/--name" 2
        [[ -f "$dockerfile" ]] || die "build: no such Dockerfile: $dockerfile" 2
        # A team's Dockerfile lives in its own repository and COPYs files beside it.
        [[ -n "$context" ]] || context="$(dirname "$dockerfile")"
        [[ -d "$context" ]] || die "build: --context: no such directory: $context" 2
        context="$(cd "$context" && pwd)"
        dockerfile="$(cd "$(dirname "$dockerfile")" && pwd)/$(basename "$dockerfile")"
        # docker/ca is staged in servekit's checkout; another context never sees it. An image FROM a
        # servekit image already trusts the certificates that image was built with.
        [[ -z "$ca" || "$context" == "$REPO" ]] || die "--ca-bundle stages docker/ca in servekit's checkout, \
which is not the build context $context: build FROM a servekit image built with --ca-bundle (it trusts them), \
COPY the certificates in your Dockerfile, or pass --context $REPO" 2
    elif [[ -n "$context" ]]; then
        die "build: --context goes with --dockerfile (servekit's own images build from the checkout)" 2
    elif [[ -n "$DOCTOR_MODEL_DATA$DOCTOR_SAMPLE" ]]; then
        die "build: --model-data and --sample go with --dockerfile (servekit's images are checked with a model of their own)" 2
    elif ((${#targets[@]} == 0)); then
        # --gpu alone: the two frameworks that have a GPU build.
        if ((gpu)); then targets=(pytorch tensorflow); else targets=("${FRAMEWORKS[@]}"); fi
    fi
    # --user NAME[:UID]: the image runs as that user (uid default 1000).
    SERVE_USER="" SERVE_UID=0
    if [[ -n "$user" ]]; then
        SERVE_USER="${user%%:*}"
        SERVE_UID=1000
        [[ "$user" == *:* ]] && SERVE_UID="${user#*:}"
        [[ "$SERVE_USER" =~ ^[a-z_][a-z0-9_-]{0,31}$ && "$SERVE_USER" != root ]] \
            || die "build: --user $user: NAME must be a non-root user name ([a-z_][a-z0-9_-]*)" 2
        if ! [[ "$SERVE_UID" =~ ^[0-9]{1,9}$ ]] || ((SERVE_UID < 1)); then
            die "build: --user $user: UID must be a number from 1 (0 is root)" 2
        fi
    fi
    # --gpu: the CUDA builds of PyTorch and TensorFlow from PyPI, linux/amd64 only.
    ACCELERATOR=cpu
    if ((gpu)); then
        ACCELERATOR=gpu
        [[ -z "$dockerfile" ]] || die "build: --gpu builds servekit's pytorch and tensorflow images, not --dockerfile" 2
        local t
        for t in "${targets[@]}"; do
            [[ "$t" != sklearn ]] || die "build: --gpu: scikit-learn has no GPU build; build sklearn without --gpu" 2
        done
        ((!torch_source_given)) \
            || die "build: --gpu installs PyPI's CUDA build of torch; --torch-wheels and --torch-index-url are for the CPU build" 2
        [[ -z "$platforms" || "$platforms" == linux/amd64 ]] \
            || die "build: --gpu builds for linux/amd64 only (the CUDA wheels it installs are x86_64 builds), not $platforms" 2
    fi
    if [[ -z "$tag" ]]; then
        [[ "$with_mms" == true ]] && tag=latest || tag=latest-nomms
        ((gpu)) && tag="$tag-gpu"
        [[ -n "$SERVE_USER" ]] && tag="$tag-nonroot"
    fi
    if [[ -n "$TORCH_WHEELS" ]]; then
        [[ -d "$TORCH_WHEELS" ]] || die "--torch-wheels: no such directory: $TORCH_WHEELS" 2
    fi
    # Architectures: the host's (tag unchanged) or each one of --platform (tag TAG-ARCH, so the
    # images of one name never overwrite each other; push --platform joins them under one tag).
    local archs=() suffix=0 p arch
    if [[ -n "$platforms" ]]; then
        suffix=1
        local plist=()
        IFS=, read -ra plist <<<"$platforms"
        ((${#plist[@]})) || die "build: --platform needs at least one platform" 2
        for p in "${plist[@]}"; do
            arch="$(platform_arch "$p")" || exit 2
            [[ " ${archs[*]} " == *" $arch "* ]] || archs+=("$arch")
        done
        ((${#archs[@]} == 1)) || [[ -z "$base" ]] \
            || die "build: --base-image names one image, which has one architecture: build one --platform at a time with it" 2
    else
        archs=("$(host_arch)")
    fi

    ((CROSS && gpu)) && die "build: --cross and --gpu do not go together (GPU images are linux/amd64 only)" 2
    ((CROSS)) && check_cross "$with_mms" "${archs[*]}" "$dockerfile" "${targets[@]}"
    pick_docker
    require_engine
    for arch in "${archs[@]}"; do
        require_emulation "$arch"
    done
    # Every framework's wheels for every platform, before anything is built.
    local fw wheels
    for arch in "${archs[@]}"; do
        for fw in "${targets[@]}"; do
            wheels="$TORCH_WHEELS"
            if [[ "$fw" == pytorch && -z "$wheels" ]] && ((!torch_source_given && !gpu)); then
                wheels="$(find_torch_wheel_dir "$arch" || true)"
            fi
            TORCH_WHEELS="$wheels" check_framework_wheels "$fw" "$arch"
        done
    done

    trap cleanup_staged EXIT
    if [[ -n "$ca" ]]; then
        [[ -r "$ca" ]] || die "--ca-bundle: cannot read $ca" 2
        stage_file "$ca" "$REPO/docker/ca/extra-ca.crt"
        say "trusting the extra CA certificates in $ca"
    fi

    local t0=$SECONDS rc=0 arch_base arch_tag torch_wheels_arg="$TORCH_WHEELS"
    for arch in "${archs[@]}"; do
        BUILD_ARCH="$arch"
        arch_base="$(pick_base "$arch" "$base" "$dockerfile")" || exit $?
        arch_tag="$tag"
        ((suffix)) && arch_tag="$tag-$arch"
        if [[ -n "$dockerfile" ]]; then
            build_one "$name" "$dockerfile" "" "$arch_tag" "$arch_base" "$with_mms" "$context" || { rc=$?; break; }
        else
            for fw in "${targets[@]}"; do
                TORCH_WHEELS="$torch_wheels_arg"
                if [[ "$fw" == pytorch && -z "$TORCH_WHEELS" ]] && ((!torch_source_given && !gpu)); then
                    TORCH_WHEELS="$(find_torch_wheel_dir "$arch" || true)"
                fi
                build_one "servekit-$fw" "Dockerfile.$fw" "$fw" "$arch_tag" "$arch_base" "$with_mms" "$REPO" || { rc=$?; break 2; }
            done
        fi
    done
    cleanup_staged
    print_summary
    printf 'total build time: %ss\n' "$((SECONDS - t0))"
    return "$rc"
}

# ---------------------------------------------------------------------------------------------
# push
# ---------------------------------------------------------------------------------------------
ecr_login() {
    local registry="$1" region="$2" password
    if command -v aws >/dev/null 2>&1; then
        password="$(aws ecr get-login-password --region "$region")" \
            || die "aws ecr get-login-password failed for region $region (check AWS credentials)"
    else
        local py=python3
        [[ -x "$REPO/.venv/bin/python" ]] && py="$REPO/.venv/bin/python"
        password="$("$py" - "$region" <<'PY'
import base64
import sys

try:
    import boto3
except ImportError:
    sys.exit("neither the aws CLI nor boto3 is installed: install one to log in to ECR")
token = boto3.client("ecr", region_name=sys.argv[1]).get_authorization_token()
data = token["authorizationData"][0]["authorizationToken"]
print(base64.b64decode(data).decode().split(":", 1)[1])
PY
)" || die "ECR login with boto3 failed for region $region (check AWS credentials)"
    fi
    printf '%s' "$password" | docker login --username AWS --password-stdin "$registry" >/dev/null \
        || die "docker login to $registry failed"
    say "logged in to $registry"
}

cmd_push() {
    local image="" dest="" region="" platforms=""
    while (($#)); do
        case "$1" in
            --to) dest="${2:?--to needs REGISTRY/REPO[:TAG]}"; shift ;;
            --region) region="${2:?--region needs a value}"; shift ;;
            --platform) platforms="${2:?--platform needs linux/amd64, linux/arm64 or both, comma-separated}"; shift ;;
            -h | --help) usage; exit 0 ;;
            -*) die "push: unknown option $1 (see --help)" 2 ;;
            *) [[ -z "$image" ]] || die "push: one IMAGE at a time" 2; image="$1" ;;
        esac
        shift
    done
    [[ -n "$image" && -n "$dest" ]] || die "push: usage: ./build.sh push IMAGE --to REGISTRY/REPO[:TAG]" 2
    local registry="${dest%%/*}"
    [[ "$registry" != "$dest" && ("$registry" == *.* || "$registry" == *:* || "$registry" == localhost) ]] \
        || die "push: --to must start with a registry host (e.g. 123456789012.dkr.ecr.us-east-1.amazonaws.com/servekit-sklearn)" 2
    require_engine
    local archs=() p arch
    if [[ -n "$platforms" ]]; then
        local plist=()
        IFS=, read -ra plist <<<"$platforms"
        for p in "${plist[@]}"; do
            arch="$(platform_arch "$p")" || exit 2
            [[ " ${archs[*]} " == *" $arch "* ]] || archs+=("$arch")
        done
        ((${#archs[@]})) || die "push: --platform needs at least one platform" 2
        [[ "${image##*/}" == *:* ]] || image="$image:latest"
        for arch in "${archs[@]}"; do
            image_exists "$image-$arch" \
                || die "push: no local image $image-$arch (build it: ./build.sh build ... --platform linux/$arch)"
            [[ "$(image_arch "$image-$arch")" == "$arch" ]] \
                || die "push: $image-$arch is $(image_arch "$image-$arch"), not $arch"
        done
    else
        image_exists "$image" || die "push: no local image $image (build it first: ./build.sh build)"
    fi
    # A tag is the part after the last ':' in the last path component.
    local last="${dest##*/}"
    if [[ "$last" != *:* ]]; then
        local src_tag="latest"
        [[ "${image##*/}" == *:* ]] && src_tag="${image##*:}"
        dest="$dest:$src_tag"
    fi
    if [[ "$registry" =~ ^[0-9]{12}\.dkr\.ecr(-fips)?\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$ ]]; then
        ecr_login "$registry" "${region:-${BASH_REMATCH[2]}}"
    fi
    if ((${#archs[@]} == 0)); then
        say "pushing $image as $dest"
        docker tag "$image" "$dest"
        docker push "$dest"
        say "pushed $dest"
        return 0
    fi
    # Multi-arch: each architecture's image is pushed under DEST-ARCH, then a manifest list (an
    # OCI image index) under DEST names them all; a client pulling DEST gets its own architecture.
    local insecure=()
    # A loopback registry speaks plain HTTP (the engine trusts 127.0.0.0/8; docker manifest must be told).
    [[ "$registry" == localhost* || "$registry" == 127.* ]] && insecure=(--insecure)
    local parts=()
    for arch in "${archs[@]}"; do
        say "pushing $image-$arch as $dest-$arch"
        docker tag "$image-$arch" "$dest-$arch"
        docker push "$dest-$arch"
        parts+=("$dest-$arch")
    done
    say "manifest list $dest -> ${parts[*]}"
    docker manifest create "${insecure[@]}" --amend "$dest" "${parts[@]}" >/dev/null \
        || die "push: docker manifest create $dest failed"
    docker manifest push "${insecure[@]}" --purge "$dest" >/dev/null || die "push: docker manifest push $dest failed"
    say "pushed $dest (linux/${archs[*]})"
}

# ---------------------------------------------------------------------------------------------
# test / demo
# ---------------------------------------------------------------------------------------------
VENV_PY=""
setup_python() {
    bash "$REPO/.ci/setup-python.sh"
    VENV_PY="${SERVEKIT_VENV:-$REPO/.venv}/bin/python"
}

# Start (or find) a Docker engine. Returns non-zero when none can be had; the caller decides
# whether that is fatal (SERVEKIT_REQUIRE_DOCKER=1) or means "skip the image tests, loudly".
setup_docker() {
    if bash "$REPO/.ci/setup-docker.sh"; then
        return 0
    fi
    if [[ "${SERVEKIT_REQUIRE_DOCKER:-0}" == 1 ]]; then
        die "no Docker engine could be started and SERVEKIT_REQUIRE_DOCKER=1 demands the image tests"
    fi
    say "WARNING: no Docker engine: the image tests will be SKIPPED (SERVEKIT_REQUIRE_DOCKER=1 makes that an error)"
    return 1
}

PHASES=()
phase() {
    # phase NAME COMMAND...: run, time and record one step; never stops the run.
    local name="$1" t0=$SECONDS rc=0
    shift
    say "$name"
    "$@" || rc=$?
    PHASES+=("$name|$rc|$((SECONDS - t0))s")
    return "$rc"
}

cmd_setup() {
    # Everything a fresh machine needs: the Python environment, a Docker engine where one can be
    # had (with the base image where no registry answers) and the three images.
    cd "$REPO"
    setup_python
    bash "$REPO/.ci/setup-sdk.sh"
    if setup_docker; then
        "$REPO/build.sh" build all
    fi
}

cmd_test() {
    local setup=1
    if [[ "${1:-}" == --no-setup ]]; then
        setup=0
        shift
    fi
    cd "$REPO"
    local t0=$SECONDS status=0
    if ((setup)); then
        phase "setup: python environment (.ci/setup-python.sh)" setup_python || die "Python setup failed"
        # The SageMaker Python SDK v2 / v3 venvs for tests/sdk; without them those tests fail under CI.
        phase "setup: SageMaker SDK venvs (.ci/setup-sdk.sh)" bash "$REPO/.ci/setup-sdk.sh" \
            || say "WARNING: .ci/setup-sdk.sh failed: the SDK tests (tests/sdk) will fail or skip"
        if phase "setup: docker engine and base image (.ci/setup-docker.sh)" setup_docker; then
            # Images first: the image tests use them (and build any that is missing, slower).
            phase "build: the three images (./build.sh build all)" "$REPO/build.sh" build all \
                || die "building the images failed (see above)"
            # SERVEKIT_ARM64=sklearn|all: the arm64 images for tests/images/test_arm64.py. The base is
            # extracted and sklearn's packages installed here (--extract, --cross: ~2 min); pytorch and
            # tensorflow (all) are built under emulation (~15 min, docs/images.md).
            if [[ -n "${SERVEKIT_ARM64:-}" ]]; then
                local arm64_targets=() fw cross
                case "$SERVEKIT_ARM64" in
                    sklearn) arm64_targets=(sklearn) ;;
                    all) arm64_targets=("${FRAMEWORKS[@]}") ;;
                    *) die "SERVEKIT_ARM64=$SERVEKIT_ARM64: expected sklearn or all" 2 ;;
                esac
                phase "setup: arm64 emulation (.ci/setup-emulation.sh)" bash "$REPO/.ci/setup-emulation.sh" \
                    || die "SERVEKIT_ARM64 is set but arm64 emulation could not be set up (see above)"
                phase "build: arm64 base (./build.sh base --platform linux/arm64 --extract)" \
                    "$REPO/build.sh" base --platform linux/arm64 --extract || die "building the arm64 base failed (see above)"
                # --no-mms: the arm64 checks use the native engine; Java's apt-get and jlink under QEMU
                # would add minutes. tests/images/test_arm64.py reads the tag from SERVEKIT_ARM64_TAG.
                # One framework at a time: one that cannot be built (e.g. no torch CPU wheel for
                # aarch64) fails its own test with build.sh's line, and the others still run.
                for fw in "${arm64_targets[@]}"; do
                    cross=()
                    [[ "$fw" == sklearn ]] && cross=(--cross)
                    phase "build: arm64 $fw image (--no-mms ${cross[*]})" \
                        "$REPO/build.sh" build "$fw" --no-mms --platform linux/arm64 "${cross[@]}" \
                        || say "WARNING: the arm64 $fw image could not be built: its test will fail"
                done
                export SERVEKIT_ARM64_TAG=latest-nomms
            fi
            # Bound the build cache that repeated CI runs on one machine accumulate; the most
            # recently used entries (these builds' layers and pip cache) are kept.
            docker builder prune -f --keep-storage "${SERVEKIT_BUILD_CACHE_KEEP:-30GB}" >/dev/null \
                || say "note: docker builder prune failed; the build cache is not trimmed"
        fi
    else
        VENV_PY="${SERVEKIT_VENV:-$REPO/.venv}/bin/python"
        [[ -x "$VENV_PY" ]] || die "no $VENV_PY: run ./build.sh test once without --no-setup"
    fi
    phase "lint: ruff check ." "$VENV_PY" -m ruff check . || status=1
    phase "types: mypy" "$VENV_PY" -m mypy || status=1
    # Tests that need Docker skip loudly without an engine unless SERVEKIT_REQUIRE_DOCKER=1.
    phase "tests: python -m pytest $*" "$VENV_PY" -m pytest "$@" || status=1
    printf '\n%-62s %-5s %s\n' STEP EXIT TIME
    local row name rc secs
    for row in "${PHASES[@]}"; do
        IFS='|' read -r name rc secs <<<"$row"
        printf '%-62s %-5s %s\n' "${name:0:62}" "$rc" "$secs"
    done
    printf 'total: %ss\n' "$((SECONDS - t0))"
    return "$status"
}

cmd_demo() {
    cd "$REPO"
    [[ -f "$REPO/examples/sklearn_tf_pipeline/demo.py" ]] \
        || die "demo: examples/sklearn_tf_pipeline/demo.py is missing (see issue 6)" 2
    setup_python
    # Without Docker the demo runs the same containers as local processes and says so.
    setup_docker || true
    exec "$VENV_PY" -m examples.sklearn_tf_pipeline.demo "$@"
}

cmd_bench() {
    cd "$REPO"
    setup_python  # also installs wrk, the load generator
    exec "$VENV_PY" -m bench "$@"
}

main() {
    (($#)) || { usage; exit 2; }
    local cmd="$1"
    shift
    case "$cmd" in
        build) cmd_build "$@" ;;
        push) cmd_push "$@" ;;
        base) cmd_base "$@" ;;
        setup) cmd_setup "$@" ;;
        test) cmd_test "$@" ;;
        demo) cmd_demo "$@" ;;
        bench) cmd_bench "$@" ;;
        -h | --help | help) usage ;;
        *) die "unknown command $cmd (see ./build.sh --help)" 2 ;;
    esac
}

# exit on the same line: bash reads scripts as it goes, and an edit during a run must not matter.
main "$@"; exit "$?"
