#!/usr/bin/env bash
# Install what the test suite needs, idempotently: the Debian packages of the end-to-end test
# bed (only those missing; apt-get runs only then) and the project's virtualenv (.venv) with the
# package installed editable with its test extras (pip runs only when pyproject.toml changed).
#
#   scripts/install-test-deps.sh          # as root, or with sudo available
#   PYTHON=python3.11 scripts/install-test-deps.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
    kamailio            # the PBX of the test bed
    sip-tester          # sipp
    baresip baresip-core
    tshark sox libsox-fmt-all espeak-ng multimon-ng
    libsndfile1         # soundfile (WAV prompts, baresip recordings)
    util-linux          # setpriv: children die with the test run
    coreutils           # timeout: hard limit on every sipp
    python3-venv
)

missing=()
for package in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done
if ((${#missing[@]})); then
    sudo=()
    if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi
    echo "install-test-deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "install-test-deps: creating .venv with $python"
    "$python" -m venv .venv
fi
stamp=.venv/.sipcallhunt-test-deps
wanted=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ] || ! .venv/bin/python -c "import sipcallhunt, pytest" 2>/dev/null; then
    echo "install-test-deps: pip install -e '.[test]'"
    .venv/bin/python -m pip install -q -e '.[test]'
    echo "$wanted" > "$stamp"
fi
echo "install-test-deps: ok"
