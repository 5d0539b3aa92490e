#!/usr/bin/env bash
# Problem 2 as the course runs it: bash hw1_2.sh <test_image_dir> <output_dir>
# Writes <stem>.png colour masks for every *.jpg of the folder, with the checkpoint named on stderr: HW1_CHECKPOINT=<file>,
# HW1_RUN=<run folder>, or by default the grader's rule (scripts/grade.sh, README).
HW1_USAGE="bash hw1_2.sh <test_image_dir> <output_dir>" exec bash "$(dirname "${BASH_SOURCE[0]}")/scripts/grade.sh" segment "$@"
