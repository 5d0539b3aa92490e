#!/usr/bin/env bash
# Problem 2, the course's calling convention: bash hw1_2.sh <test_image_dir> <output_dir>
# Writes <stem>.png colour masks for every *.jpg of the folder, using the best checkpoint of the latest finished
# segmentation run under runs/ (or the checkpoint named by HW1_CHECKPOINT).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ "$#" -ne 2 ]; then
    echo "usage: bash hw1_2.sh <test_image_dir> <output_dir>" >&2
    exit 2
fi
python="$here/.venv/bin/python"
[ -x "$python" ] || python="python3"  # no project environment: a Python with the dependencies installed
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
exec "$python" -m hw1lib segment "$1" "$2" ${HW1_CHECKPOINT:+--checkpoint "$HW1_CHECKPOINT"}
