#!/usr/bin/env bash
# Make the project's Python environment: .venv with servekit and every extra, plus a headless JRE
# for the multi-model-server engine and wrk for the benchmarks. Idempotent; re-running only installs what changed.
#
# PyTorch: torch==2.13.0 is installed first and on its own. On machines whose pip finds the CPU
# wheel locally (PIP_FIND_LINKS) that is the CPU build; elsewhere the CPU index is used. A bare
# "torch" requirement would pull a multi-GB CUDA build.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${SERVEKIT_VENV:-$repo/.venv}"
torch_version="${SERVEKIT_TORCH_VERSION:-2.13.0}"

say() { printf '[setup-python] %s\n' "$*" >&2; }

# Debian packages: a headless JRE (multi-model-server runs on Java) and wrk (bench/'s load generator).
packages=()
command -v java >/dev/null 2>&1 || packages+=(openjdk-17-jre-headless)
command -v wrk >/dev/null 2>&1 || packages+=(wrk)
if ((${#packages[@]})); then
    say "installing ${packages[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi

if [[ ! -x "$venv/bin/python" ]]; then
    say "creating $venv"
    python3 -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
"${pip[@]}" install -q --upgrade pip

if ! "$venv/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$torch_version')" 2>/dev/null; then
    if ls "${PIP_FIND_LINKS:-/nonexistent}"/torch-"$torch_version"+cpu-*.whl >/dev/null 2>&1; then
        say "installing torch==$torch_version from $PIP_FIND_LINKS"
        "${pip[@]}" install -q "torch==$torch_version"
    else
        say "installing torch==$torch_version (CPU build) from the PyTorch CPU index"
        "${pip[@]}" install -q "torch==$torch_version" --index-url https://download.pytorch.org/whl/cpu
    fi
fi

say "installing servekit with extras sklearn, pytorch, tensorflow, mms, harness, onnx, bench, test"
"${pip[@]}" install -q -e "${repo}[sklearn,pytorch,tensorflow,mms,harness,onnx,bench,test]"
say "ready: $venv"
