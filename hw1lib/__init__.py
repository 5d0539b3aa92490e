"""hw1lib: data, models, training engine, metrics and figures for the HW1 notebook report.

The torchvision compatibility module is imported first, before anything imports torchvision: see
``hw1lib/_compat.py`` for why. Nothing heavy is imported here otherwise.
"""

from hw1lib import _compat  # noqa: F401  (must run before any torchvision import)

__version__ = "0.1.0"
