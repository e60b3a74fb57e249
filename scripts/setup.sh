#!/usr/bin/env bash
# Create .venv (if missing) and install ntkit with the CPU build of PyTorch 2.13.0.
# Usage: scripts/setup.sh [extras], e.g. scripts/setup.sh test
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
# Pin torch first: an unpinned torch would pull several GB of CUDA wheels.
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".${extras:+[$extras]}"
if [[ ",${extras}," == *",test,"* ]]; then
    # SpliceAI's published weights (CC BY-NC 4.0, read by ntkit, never shipped): the package's own
    # dependencies (Keras, TensorFlow) are not needed to read them, so it is installed without them.
    python -m pip install -q --no-deps "spliceai==1.3.1"
fi
if [[ ",${extras}," == *",test,"* ]] && ! command -v chromium > /dev/null; then
    # Debian's chromium and its driver, for the test that opens a review page in a headless browser
    # (it skips with the reason where they cannot be installed: no apt-get, not root).
    if command -v apt-get > /dev/null && [ "$(id -u)" = 0 ]; then
        (apt-get install -y -q chromium chromium-driver > /dev/null 2>&1 \
         || (apt-get update -q > /dev/null 2>&1 && apt-get install -y -q chromium chromium-driver > /dev/null 2>&1)) \
         || echo "chromium could not be installed: the browser test will skip"
    fi
fi
