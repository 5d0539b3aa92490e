#!/usr/bin/env bash
# Problem 1 as the course runs it: bash hw1_1.sh <test_image_dir> <output_csv>
# Writes filename,label for every *.png of the folder, with the checkpoint named on stderr: HW1_CHECKPOINT=<file>,
# HW1_RUN=<run folder>, or by default the grader's rule (scripts/grade.sh, README).
HW1_USAGE="bash hw1_1.sh <test_image_dir> <output_csv>" exec bash "$(dirname "${BASH_SOURCE[0]}")/scripts/grade.sh" classify "$@"
