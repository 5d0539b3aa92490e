#!/usr/bin/env bash
# Problem 1, the course's calling convention: bash hw1_1.sh <test_image_dir> <output_csv>
# Writes filename,label for every *.png of the folder, using the best checkpoint of the latest finished
# classification run under runs/ (or the checkpoint named by HW1_CHECKPOINT).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ "$#" -ne 2 ]; then
    echo "usage: bash hw1_1.sh <test_image_dir> <output_csv>" >&2
    exit 2
fi
python="$here/.venv/bin/python"
[ -x "$python" ] || python="python3"  # no project environment: a Python with the dependencies installed
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
exec "$python" -m hw1lib classify "$1" "$2" ${HW1_CHECKPOINT:+--checkpoint "$HW1_CHECKPOINT"}
