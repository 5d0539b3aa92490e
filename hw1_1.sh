#!/usr/bin/env bash
# Problem 1 as the course runs it: bash hw1_1.sh <test_image_dir> <output_csv>
# Writes filename,label for every *.png of the folder (see scripts/grade.sh for the checkpoint used).
HW1_USAGE="bash hw1_1.sh <test_image_dir> <output_csv>" exec bash "$(dirname "${BASH_SOURCE[0]}")/scripts/grade.sh" classify "$@"
