#!/usr/bin/env bash
# Problem 2 as the course runs it: bash hw1_2.sh <test_image_dir> <output_dir>
# Writes <stem>.png colour masks for every *.jpg of the folder (see scripts/grade.sh for the checkpoint used).
HW1_USAGE="bash hw1_2.sh <test_image_dir> <output_dir>" exec bash "$(dirname "${BASH_SOURCE[0]}")/scripts/grade.sh" segment "$@"
