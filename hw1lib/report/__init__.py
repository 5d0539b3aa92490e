"""The report's content, computed from finished runs: tables (:mod:`.tables`) and paragraphs (:mod:`.text`).

Notebook 06 reads ``report.<function>``; nothing here trains or draws.

What this is not: the build (papermill and export, :mod:`hw1lib.build`) or the figures (:mod:`hw1lib.viz`).
"""

from hw1lib.report.tables import (
    REFERENCE,
    comparison_table,
    config_table,
    data_source_of,
    data_statement,
    environment_table,
    fast_dev_run_statement,
    implementation_details,
    iou_table,
    is_fast_dev_run,
    load_experiments,
    results_table,
)
from hw1lib.report.text import (
    accuracy_text,
    compare_sentence,
    curve_sentence,
    deeplab_text,
    departures_text,
    fcn_text,
    masks_text,
    miou_text,
    model_b_text,
    neighbour_accuracy,
    pca_text,
    tsne_text,
    vgg_like_text,
)

__all__ = [
    "REFERENCE",
    "accuracy_text",
    "compare_sentence",
    "comparison_table",
    "config_table",
    "curve_sentence",
    "data_source_of",
    "data_statement",
    "deeplab_text",
    "departures_text",
    "environment_table",
    "fast_dev_run_statement",
    "fcn_text",
    "implementation_details",
    "iou_table",
    "is_fast_dev_run",
    "load_experiments",
    "masks_text",
    "miou_text",
    "model_b_text",
    "neighbour_accuracy",
    "pca_text",
    "results_table",
    "tsne_text",
    "vgg_like_text",
]
