#!/usr/bin/env bash
# The main job on a fresh machine: install sipcallhunt into .venv and run the loopback demo
# (the real daemon answers a simulated caller, hunts three simulated agents, bridges the one who
# presses 1, prints the transcript and the call log). Needs only python3 (>= 3.11) with venv.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet .
exec .venv/bin/sipcallhunt demo "$@"
