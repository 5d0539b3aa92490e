"""A generated stand-in for the homework data, written in exactly the layout of the course's archive.

What it is: synthetic data that lets every loader, model, notebook and CLI command run where the real
``hw1_data`` is absent. The real loaders read it like real data; nothing anywhere special-cases it.

- Problem 1: 50 classes of 32x32 RGB images. A class is one of 10 shapes (circle, square, triangle, star,
  cross, ring, bars, checker, crescent, chevron) in one of 5 styles (warm solid, warm striped, cool solid,
  cool striped, green dotted); ``label = 10 * style + shape``. Position, scale, a small tilt, hue, shading,
  background colour, small clutter shapes, lines and noise vary per image, so a small CNN learns the
  classes, not at once, and confuses neighbours (striped vs solid, circle vs ring vs crescent).
- Problem 2: land-cover-like scenes: warped Voronoi regions of the base classes with forest and water
  blobs, rivers and rare no-data corners laid over them; each class has its own colour and texture
  (fields and rows for agriculture, street grids for urban, fine dark grain for forest, smooth water),
  with overlapping colours (khaki rangeland between green agriculture and brighter barren). Pixel shares
  follow the real masks' (agriculture over half, water and unknown rare); calibration in p1.py and p2.py.
  Masks use the official palette.

What it is not: a model of the real images' statistics. Numbers measured on it show that the pipeline
works, not how a model would score on the real data.

Every image draws from its own random generator seeded by ``(seed, problem, split, label, id)``, so the
output is byte-identical for a seed whatever the number of worker processes. Files are written into a
temporary sibling folder that is renamed into place at the end, with a ``standin.json`` manifest that
lets a second call with the same parameters return at once.

Submodules:

- :mod:`~hw1lib.data.standin.p1`: the Problem 1 renderer (shapes, styles, :func:`render_p1_image`).
- :mod:`~hw1lib.data.standin.p2`: the Problem 2 renderer (noise fields, class map, textures, :func:`render_p2_pair`).
- :mod:`~hw1lib.data.standin.writer`: sizes, jobs, manifest, workers, atomic move, :func:`generate_standin`.
"""

from __future__ import annotations

from hw1lib.data.standin.p1 import P1_SHAPES, P1_STYLES, describe_p1_class, render_p1_image
from hw1lib.data.standin.p2 import render_p2_pair
from hw1lib.data.standin.writer import (
    FAST_DEV_SIZES,
    GENERATOR_VERSION,
    MANIFEST_NAME,
    STANDIN_SIZES,
    StandinSize,
    generate_standin,
    standin_size,
)

__all__ = [
    "FAST_DEV_SIZES",
    "GENERATOR_VERSION",
    "MANIFEST_NAME",
    "P1_SHAPES",
    "P1_STYLES",
    "STANDIN_SIZES",
    "StandinSize",
    "describe_p1_class",
    "generate_standin",
    "render_p1_image",
    "render_p2_pair",
    "standin_size",
]
