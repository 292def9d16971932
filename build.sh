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

usage() {
    cat <<'EOF'
Usage: ./build.sh COMMAND [OPTIONS]

Commands:
  build [sklearn|pytorch|tensorflow|all ...]   build serving images (default: all)
  build --dockerfile FILE --name NAME          build any Dockerfile (e.g. a custom framework); the
        [--context DIR]                        build context is the Dockerfile's directory unless --context
  push IMAGE --to REGISTRY/REPO[:TAG]          tag and push; logs in to ECR first when the
                                               registry is *.dkr.ecr.*.amazonaws.com
  base [--force]                               make servekit/base:bookworm from Debian packages
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
  --torch-wheels DIR     install PyTorch from the wheel(s) in DIR (bind-mounted, no layer
                         keeps them); default: $PIP_FIND_LINKS when it holds torch-*+cpu*.whl
  --torch-index-url URL  PyTorch index (default https://download.pytorch.org/whl/cpu)
  --no-cache             build without the layer cache
  --network MODE         build network (default host: works with or without a bridge)
  --progress MODE        BuildKit progress output: plain (default), auto, tty, quiet

push options:
  --to REGISTRY/REPO[:TAG]   destination (TAG defaults to IMAGE's tag)
  --region REGION            ECR region (default: taken from the registry host)

base options:
  --force                rebuild even if servekit/base:bookworm exists
  --if-no-registry       do nothing when the default base image can be pulled
  --ca-bundle FILE       CA bundle copied into the base (default /etc/ssl/certs/ca-certificates.crt)
  --mirror URL           Debian mirror (default http://deb.debian.org/debian)

Environment: SERVEKIT_DOCKER (docker client to use), SERVEKIT_PULL_TIMEOUT_S (registry probe, 20).
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
# base
# ---------------------------------------------------------------------------------------------
cmd_base() {
    local force=0 if_no_registry=0 ca="/etc/ssl/certs/ca-certificates.crt"
    local mirror="http://deb.debian.org/debian" name="$LOCAL_BASE_IMAGE"
    while (($#)); do
        case "$1" in
            --force) force=1 ;;
            --if-no-registry) if_no_registry=1 ;;
            --ca-bundle) ca="${2:?--ca-bundle needs a file}"; shift ;;
            --mirror) mirror="${2:?--mirror needs a URL}"; shift ;;
            --name) name="${2:?--name needs an image name}"; shift ;;
            -h | --help) usage; exit 0 ;;
            *) die "base: unknown option $1 (see --help)" 2 ;;
        esac
        shift
    done
    require_engine
    if ((!force)) && image_exists "$name"; then
        say "base image $name exists; skipping (use --force to remake it)"
        return 0
    fi
    if ((if_no_registry)) && default_base_available; then
        say "registry reachable ($DEFAULT_BASE_IMAGE); no local base image needed"
        return 0
    fi
    command -v debootstrap >/dev/null 2>&1 \
        || die "debootstrap is missing: apt-get install -y debootstrap"
    [[ -r "$ca" ]] || die "CA bundle $ca not readable (pass --ca-bundle FILE)"
    local rootfs
    rootfs="$(mktemp -d /tmp/servekit-rootfs.XXXXXX)"
    # shellcheck disable=SC2064  # expand now: the path is fixed
    trap "rm -rf '$rootfs'" EXIT
    local t0=$SECONDS
    say "debootstrap bookworm (minbase + python3, python3-venv, ca-certificates) into $rootfs"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$rootfs" "$mirror" >/tmp/servekit-debootstrap.log 2>&1 \
        || { tail -n 20 /tmp/servekit-debootstrap.log >&2; die "debootstrap failed (log /tmp/servekit-debootstrap.log)"; }
    # The host's CA bundle: pip and apt inside builds go through the same TLS-intercepting proxy
    # the host trusts (see docs/images.md).
    cp "$ca" "$rootfs/etc/ssl/certs/ca-certificates.crt"
    # Keep the image small: package caches and lists are refetched by any build that needs them.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    say "importing as $name"
    tar -C "$rootfs" -c . | docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["/bin/bash"]' \
        - "$name" >/dev/null
    rm -rf "$rootfs"
    trap - EXIT
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
}

# torch wheel dir: the explicit one, else $PIP_FIND_LINKS entries that hold a CPU wheel.
find_torch_wheel_dir() {
    local d
    local IFS=' '
    for d in ${PIP_FIND_LINKS:-}; do
        d="${d#file://}"
        if [[ -d "$d" ]] && compgen -G "$d/torch-${TORCH_VERSION_DEFAULT}-*.whl" >/dev/null; then
            printf '%s\n' "$d"
            return 0
        fi
    done
    return 1
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
        --build-arg "BASE_IMAGE=$base" --build-arg "WITH_MMS=$with_mms")
    ((NO_CACHE)) && args+=(--no-cache)
    if [[ "$framework" == pytorch ]]; then
        args+=(--build-arg "TORCH_VERSION=$TORCH_VERSION_DEFAULT")
        if [[ -n "$TORCH_WHEELS" ]]; then
            local w n=0
            for w in "$TORCH_WHEELS"/torch-*.whl; do
                [[ -e "$w" ]] || continue
                stage_file "$w" "$REPO/docker/wheels/$(basename "$w")"
                n=$((n + 1))
            done
            ((n)) || die "no torch-*.whl in $TORCH_WHEELS"
            say "pytorch: installing from local wheel(s) in $TORCH_WHEELS (bind mount, no layer)"
            args+=(--build-arg "TORCH_INDEX_URL=")
        else
            say "pytorch: installing torch $TORCH_VERSION_DEFAULT from $TORCH_INDEX_URL"
            args+=(--build-arg "TORCH_INDEX_URL=$TORCH_INDEX_URL")
        fi
    fi
    say "building $image from $dockerfile (context $context, base $base, mms $with_mms)"
    local t0=$SECONDS rc=0
    (cd "$context" && DOCKER_BUILDKIT=1 "${DOCKER[@]}" "${args[@]}" .) || rc=$?
    local secs=$((SECONDS - t0))
    # The wheels are for this image only: the next image's build context must not carry them.
    rm -f "$REPO"/docker/wheels/*.whl
    if ((rc)); then
        SUMMARY+=("$image|FAILED|-|${secs}s")
        return "$rc"
    fi
    local bytes
    bytes="$(docker image inspect -f '{{.Size}}' "$image")"
    SUMMARY+=("$image|ok|$(human_size "$bytes")|${secs}s")
    say "built $image in ${secs}s ($(human_size "$bytes"))"
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

cmd_build() {
    local targets=() tag="" base="" ca="" with_mms=true dockerfile="" name="" context=""
    NO_CACHE=0 NETWORK=host PROGRESS=plain TORCH_WHEELS="" TORCH_INDEX_URL="$TORCH_INDEX_URL_DEFAULT"
    local torch_source_given=0
    while (($#)); do
        case "$1" in
            sklearn | pytorch | tensorflow) targets+=("$1") ;;
            all) targets+=("${FRAMEWORKS[@]}") ;;
            --tag) tag="${2:?--tag needs a value}"; shift ;;
            --base-image) base="${2:?--base-image needs an image}"; shift ;;
            --ca-bundle) ca="${2:?--ca-bundle needs a file}"; shift ;;
            --no-mms) with_mms=false ;;
            --torch-wheels) TORCH_WHEELS="${2:?--torch-wheels needs a directory}"; torch_source_given=1; shift ;;
            --torch-index-url) TORCH_INDEX_URL="${2:?--torch-index-url needs a URL}"; torch_source_given=1; shift ;;
            --dockerfile) dockerfile="${2:?--dockerfile needs a file}"; shift ;;
            --name) name="${2:?--name needs an image name}"; shift ;;
            --context) context="${2:?--context needs a directory}"; shift ;;
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
    elif ((${#targets[@]} == 0)); then
        targets=("${FRAMEWORKS[@]}")
    fi
    [[ -z "$tag" ]] && { [[ "$with_mms" == true ]] && tag=latest || tag=latest-nomms; }
    if [[ -n "$TORCH_WHEELS" ]]; then
        [[ -d "$TORCH_WHEELS" ]] || die "--torch-wheels: no such directory: $TORCH_WHEELS" 2
    elif ((!torch_source_given)); then
        TORCH_WHEELS="$(find_torch_wheel_dir || true)"
    fi

    pick_docker
    require_engine
    if [[ -z "$base" ]]; then
        if default_base_available; then
            base="$DEFAULT_BASE_IMAGE"
        elif image_exists "$LOCAL_BASE_IMAGE"; then
            base="$LOCAL_BASE_IMAGE"
            say "no registry reachable for $DEFAULT_BASE_IMAGE: using the local base $LOCAL_BASE_IMAGE"
        elif [[ -n "$dockerfile" ]]; then
            # Another Dockerfile may not use BASE_IMAGE at all (e.g. one built FROM a servekit image).
            base="$DEFAULT_BASE_IMAGE"
            say "note: cannot pull $DEFAULT_BASE_IMAGE and no $LOCAL_BASE_IMAGE; passing BASE_IMAGE=$base anyway"
        else
            die "cannot pull $DEFAULT_BASE_IMAGE and $LOCAL_BASE_IMAGE does not exist: run ./build.sh base first (or pass --base-image)"
        fi
    fi

    trap cleanup_staged EXIT
    if [[ -n "$ca" ]]; then
        [[ -r "$ca" ]] || die "--ca-bundle: cannot read $ca" 2
        stage_file "$ca" "$REPO/docker/ca/extra-ca.crt"
        say "trusting the extra CA certificates in $ca"
    fi

    local t0=$SECONDS rc=0 fw
    if [[ -n "$dockerfile" ]]; then
        build_one "$name" "$dockerfile" "" "$tag" "$base" "$with_mms" "$context" || rc=$?
    else
        for fw in "${targets[@]}"; do
            build_one "servekit-$fw" "Dockerfile.$fw" "$fw" "$tag" "$base" "$with_mms" "$REPO" || { rc=$?; break; }
        done
    fi
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
    local image="" dest="" region=""
    while (($#)); do
        case "$1" in
            --to) dest="${2:?--to needs REGISTRY/REPO[:TAG]}"; shift ;;
            --region) region="${2:?--region needs a value}"; shift ;;
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
    image_exists "$image" || die "push: no local image $image (build it first: ./build.sh build)"
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
    say "pushing $image as $dest"
    docker tag "$image" "$dest"
    docker push "$dest"
    say "pushed $dest"
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
