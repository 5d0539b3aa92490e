#!/usr/bin/env bash
# The body of hw1_1.sh and hw1_2.sh: bash scripts/grade.sh classify|segment <input_dir> <output>
# Runs `python -m hw1lib <command>` with the project's environment (.venv, else python3 with the package on
# PYTHONPATH). The checkpoint: the file in HW1_CHECKPOINT, else best.pt of the run folder in HW1_RUN, else the
# grader's rule (README, "Which checkpoint the course scripts use"): best.pt of the best run of that task
# trained without overrides in the most complete profile (full, then demo, then smoke; never a fast dev run).
# The command names the checkpoint it used in one line on stderr.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
command="$1"
shift
if [ "$#" -ne 2 ]; then
    echo "usage: ${HW1_USAGE:-bash scripts/grade.sh $command <input_dir> <output>}" >&2
    exit 2
fi
python="$root/.venv/bin/python"
[ -x "$python" ] || python="python3"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
exec "$python" -m hw1lib "$command" "$1" "$2" ${HW1_CHECKPOINT:+--checkpoint "$HW1_CHECKPOINT"} \
    ${HW1_RUN:+--run "$HW1_RUN"}
