#!/usr/bin/env bash
# Make the SageMaker Python SDK test environments, each apart from .venv (the SDK pins its own boto3,
# pandas, protobuf ...): .venv-sdk2 with SDK v2, .venv-sdk3 with SDK v3. tests/sdk runs its user
# scripts with their interpreters. Idempotent: a venv whose stamp matches what it should hold is kept.
#
# By default each venv gets exactly tests/sdk/requirements-sdk<N>.txt (pinned, installed --no-deps,
# then `pip check`): resolving 'sagemaker>=3,<4' from scratch takes ~10 minutes on a 2-core machine,
# installing the pins ~2. To try other releases, set a spec and pip resolves it instead:
#   SERVEKIT_SDK2_SPEC='sagemaker>=2.257,<3'   SERVEKIT_SDK3_SPEC='sagemaker>=3.27,<4'
#   SERVEKIT_SDK_VENV_DIR: where the venvs go (default: the repository root)
#
# Neither SDK needs PyTorch; a venv that ends up with torch in it (a multi-GB CUDA build on most
# machines) is an error, not something to carry silently.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv_dir="${SERVEKIT_SDK_VENV_DIR:-$repo}"

say() { printf '[setup-sdk] %s\n' "$*" >&2; }

# make_sdk_venv VENV SPEC LOCKFILE: SPEC when given, else the pins in LOCKFILE.
make_sdk_venv() {
    local venv="$1" spec="$2" lock="$3" want t0=$SECONDS
    if [[ -n "$spec" ]]; then want="spec: $spec"; else want="pins: $(sha256sum "$lock" | cut -c1-16)"; fi
    if [[ -x "$venv/bin/python" && "$(cat "$venv/.servekit-sdk" 2>/dev/null)" == "$want" ]] \
        && "$venv/bin/python" -c "import sagemaker" >/dev/null 2>&1; then
        say "$venv is up to date ($want)"
        return 0
    fi
    rm -rf "$venv"
    say "creating $venv ($want)"
    python3 -m venv "$venv"
    local pip=("$venv/bin/python" -m pip --disable-pip-version-check)
    "${pip[@]}" install -q --upgrade pip
    if [[ -n "$spec" ]]; then
        "${pip[@]}" install -q "$spec"
    else
        "${pip[@]}" install -q --no-deps -r "$lock"
        "${pip[@]}" check >&2 || { say "error: $lock is not a consistent set of packages"; return 1; }
    fi
    if "$venv/bin/python" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is None)"; then
        say "error: $venv got torch; the SDK tests must not need it"
        return 1
    fi
    printf '%s' "$want" >"$venv/.servekit-sdk"
    say "ready: $venv (sagemaker $("$venv/bin/python" -m pip show sagemaker | sed -n 's/^Version: //p'), $((SECONDS - t0)) s)"
}

make_sdk_venv "$venv_dir/.venv-sdk2" "${SERVEKIT_SDK2_SPEC:-}" "$repo/tests/sdk/requirements-sdk2.txt"
make_sdk_venv "$venv_dir/.venv-sdk3" "${SERVEKIT_SDK3_SPEC:-}" "$repo/tests/sdk/requirements-sdk3.txt"
