"""The stand-in's Problem 2 renderer: land-cover-like scenes and their class maps.

Warped Voronoi regions of the base classes (two to six per tile) with forest and water blobs, rivers and rare
no-data corners laid over them; each class has its own colour and texture (green and yellow-green parcels with
rows for agriculture, grey street grids for urban, dark crowns for forest, smooth dark blue water, bright sand
for barren), and rangeland (khaki ground with shrubs) lies between agriculture and barren in colour, so that
it is the class most easily confused, as on the real data. Class ids are the palette's.

Why these choices (generator version 2; what each measured is in ``benchmarks/RESULTS.md``, "Stand-in
calibration"):

- Pixel shares follow the real masks: agriculture the majority class, urban, rangeland, barren and forest each a
  tenth or less, water rare and only in some tiles (but in enough of them that a small validation set holds
  some), unknown nearly absent. ``tests/test_standin.py`` checks the shares.
- Few, large regions per tile: at the demo's 128 px a stride-32 network (FCN32s) sees a 4x4 score grid, so with
  many small regions even a perfect coarse prediction would score low; large regions leave it what a 512 px real
  tile leaves FCN32s's 16x16 grid.
- Colours: agriculture green to yellow-green and barren bright, with rangeland in between, so that rangeland is
  the class most easily confused (as on the real data) while colour and texture still separate the classes; what
  limits the demo's segmenters is how few steps a CPU affords them (see ``DEMO_DEPARTURES`` in
  :mod:`hw1lib.config`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

from hw1lib.data.palette import CLASS_NAMES

URBAN, AGRICULTURE, RANGELAND, FOREST, WATER, BARREN, UNKNOWN = (
    CLASS_NAMES.index(name) for name in ("urban", "agriculture", "rangeland", "forest", "water", "barren", "unknown")
)
#: base classes of the Voronoi regions and their average share before forest/water overlays
_BASE_CLASSES = np.array([URBAN, AGRICULTURE, RANGELAND, FOREST, BARREN])
_BASE_SHARES = np.array([0.10, 0.63, 0.12, 0.04, 0.11])


@lru_cache(maxsize=4)
def _unit_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [0, 1], so scenes look alike at every resolution."""
    axis = (np.arange(size, dtype=np.float32) + 0.5) / size
    x, y = np.meshgrid(axis, axis)
    return x, y


def _smooth(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """A smooth random field of unit standard deviation with about ``cells`` bumps across the image."""
    cells = max(1, min(cells, size // 2))
    grid = rng.standard_normal((cells + 1, cells + 1)).astype(np.float32)
    field = np.asarray(Image.fromarray(grid).resize((size, size), Image.BICUBIC))
    return (field - field.mean()) / (field.std() + 1e-6)


def _fractal(rng: np.random.Generator, size: int, cells: int, octaves: int) -> np.ndarray:
    """Sum of smooth fields at doubling frequencies and halving amplitudes, unit standard deviation.

    The sum has no detail finer than its last octave, so it is built at a lower resolution (8 pixels per
    bump) and upsampled once, rather than summing every octave at full resolution.
    """
    work = min(size, max(32, 8 * cells * 2 ** (octaves - 1)))
    field = sum(0.5**k * _smooth(rng, work, cells * 2**k) for k in range(octaves))
    if work < size:
        field = np.asarray(Image.fromarray(field.astype(np.float32)).resize((size, size), Image.BICUBIC))
    return (field - field.mean()) / (field.std() + 1e-6)


def _hash01(table: np.ndarray, *ints: np.ndarray) -> np.ndarray:
    """A per-cell random value in [0, 1) for integer cell indices (parcels, blocks)."""
    key = np.zeros_like(ints[0], dtype=np.int64)
    for i, n in enumerate(ints):
        key ^= n.astype(np.int64) * (73856093, 19349663, 83492791)[i]
    return table[key & (len(table) - 1)]


def _p2_class_map(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A class map (uint8) and the Voronoi region index of every pixel (per-region appearance)."""
    x, y = _unit_grid(size)
    wx = x + 0.12 * _fractal(rng, size, 2, 4)  # domain warp: curvy, wiggly region borders
    wy = y + 0.12 * _fractal(rng, size, 2, 4)
    n = int(rng.integers(2, 7))  # few, large regions: a tile holds a handful of land uses
    seeds, weights = rng.random((n, 2)).astype(np.float32), rng.uniform(0, 0.04, n).astype(np.float32)
    best = np.full((size, size), np.inf, np.float32)
    region = np.zeros((size, size), np.int16)
    for k in range(n):
        dist = (wx - seeds[k, 0]) ** 2 + (wy - seeds[k, 1]) ** 2 - weights[k]
        closer = dist < best
        best = np.where(closer, dist, best)
        region[closer] = k
    shares = rng.dirichlet(3.0 * _BASE_SHARES / _BASE_SHARES.sum())
    classes = _BASE_CLASSES[rng.choice(len(_BASE_CLASSES), size=n, p=shares)]
    cmap = classes[region].astype(np.uint8)
    if rng.random() < 0.3:  # forest patches
        cmap[_fractal(rng, size, 2, 3) > rng.uniform(0.8, 1.6)] = FOREST
    if rng.random() < 0.25:  # lakes
        cmap[_fractal(rng, size, 2, 3) > rng.uniform(1.1, 1.8)] = WATER
    if rng.random() < 0.08:  # a river: a wavy band across the image
        a = rng.uniform(0, math.pi)
        across = (x - 0.5) * math.sin(a) - (y - 0.5) * math.cos(a) + 0.08 * _fractal(rng, size, 2, 3)
        cmap[np.abs(across - rng.uniform(-0.3, 0.3)) < rng.uniform(0.03, 0.05)] = WATER
    if rng.random() < 0.05:  # no-data: a straight-edged corner wedge, as on tile borders
        a = rng.uniform(0, 2 * math.pi)
        cmap[(x - 0.5) * math.cos(a) + (y - 0.5) * math.sin(a) > rng.uniform(0.45, 0.65)] = UNKNOWN
    return cmap, region


@dataclass
class _Scene:
    """What the per-class textures draw from: coordinates, shared noise fields, per-region draws."""

    x: np.ndarray
    y: np.ndarray
    region: np.ndarray
    grain: np.ndarray  # per-pixel noise
    blotch: np.ndarray  # medium-scale noise
    crowns: np.ndarray  # tree-crown-scale noise
    angle: np.ndarray  # per region
    table: np.ndarray  # per-cell random values for _hash01
    rng: np.random.Generator
    size: int


def _rotated(scene: _Scene, m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Masked coordinates rotated by each pixel's region angle, plus the region ids."""
    reg = scene.region[m]
    a = scene.angle[reg]
    x, y = scene.x[m], scene.y[m]
    return x * np.cos(a) + y * np.sin(a), -x * np.sin(a) + y * np.cos(a), reg


def _colour(rgb: tuple[float, float, float], scene: _Scene, jitter: float = 0.08) -> np.ndarray:
    """A class colour varied per draw: mostly in brightness, a little in hue (no pink sand)."""
    gain = (1 + scene.rng.normal(0, jitter)) * (1 + scene.rng.normal(0, 0.025, 3))
    return np.array(rgb, np.float32) * gain.astype(np.float32)


def _agriculture(scene: _Scene, m: np.ndarray) -> np.ndarray:
    """Parcels of green and yellow-green fields with ploughed rows, oriented per region."""
    u, w, reg = _rotated(scene, m)
    size = scene.rng.uniform(0.05, 0.16)
    pu, pw = np.floor(u / size), np.floor(w / (size * scene.rng.uniform(0.5, 1.5)))
    pick = _hash01(scene.table, pu, pw, reg)[:, None]
    green, yellow = _colour((108, 142, 62), scene), _colour((158, 160, 78), scene)
    base = green * pick + yellow * (1 - pick)
    period = max(scene.rng.uniform(0.008, 0.02), 3.0 / scene.size)
    rows = 0.06 * np.sin(2 * math.pi * (u if scene.rng.random() < 0.5 else w) / period)
    shade = 1 + rows + 0.05 * scene.blotch[m] + 0.04 * scene.grain[m]
    return base * shade[:, None]


def _urban(scene: _Scene, m: np.ndarray) -> np.ndarray:
    """A street grid of light roads around blocks of varied roofs, with tree speckles."""
    u, w, reg = _rotated(scene, m)
    period = max(scene.rng.uniform(0.03, 0.06), 6.0 / scene.size)
    road = ((u / period) % 1 < 0.2) | ((w / period) % 1 < 0.2)
    roof = 0.6 + 0.8 * _hash01(scene.table, np.floor(u / period * 2), np.floor(w / period * 2), reg)
    base = _colour((132, 132, 136), scene) * roof[:, None]
    base[road] = _colour((178, 176, 172), scene)
    trees = scene.crowns[m] > 1.3
    base[trees] = _colour((70, 92, 58), scene)
    return base * (1 + 0.12 * scene.grain[m])[:, None]


def _rangeland(scene: _Scene, m: np.ndarray) -> np.ndarray:
    """Khaki blotchy ground with dark shrubs: between agriculture and barren in colour, the hardest class."""
    base = np.broadcast_to(_colour((150, 134, 94), scene, 0.1), (int(m.sum()), 3)).copy()
    base[scene.crowns[m] > 1.5] = _colour((92, 98, 62), scene)
    return base * (1 + 0.14 * scene.blotch[m] + 0.05 * scene.grain[m])[:, None]


def _forest(scene: _Scene, m: np.ndarray) -> np.ndarray:
    """Dark green canopy with a fine crown texture."""
    shade = 1 + 0.22 * scene.crowns[m] + 0.1 * scene.blotch[m] + 0.08 * scene.grain[m]
    return _colour((40, 74, 36), scene, 0.12) * shade[:, None]


def _water(scene: _Scene, m: np.ndarray) -> np.ndarray:
    """Smooth dark blue, sometimes a little turbid, with almost no texture."""
    turbid = scene.rng.uniform(0, 0.4)
    base = (1 - turbid) * _colour((28, 48, 98), scene) + turbid * _colour((50, 80, 90), scene)
    return base * (1 + 0.05 * scene.blotch[m] + 0.02 * scene.grain[m])[:, None]


def _barren(scene: _Scene, m: np.ndarray) -> np.ndarray:
    """Light sand and rock with soft streaks."""
    u, _, _ = _rotated(scene, m)
    streaks = 0.05 * np.sin(2 * math.pi * u / scene.rng.uniform(0.05, 0.15))
    shade = 1 + 0.12 * scene.blotch[m] + 0.06 * scene.grain[m] + streaks
    return _colour((206, 192, 168), scene, 0.1) * shade[:, None]


def _unknown(scene: _Scene, m: np.ndarray) -> np.ndarray:
    """No-data: nearly black."""
    return np.array([10, 10, 12], np.float32) * (1 + 0.3 * scene.grain[m])[:, None]


_P2_TEXTURES = (_urban, _agriculture, _rangeland, _forest, _water, _barren, _unknown)


def render_p2_pair(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw one scene: an (S, S, 3) uint8 RGB image and its (S, S) uint8 class map."""
    cmap, region = _p2_class_map(rng, size)
    x, y = _unit_grid(size)
    scene = _Scene(
        x=x, y=y, region=region,
        grain=rng.standard_normal((size, size), dtype=np.float32),
        blotch=_fractal(rng, size, 6, 3),
        crowns=_smooth(rng, size, size // 5),
        angle=rng.uniform(0, math.pi, int(region.max()) + 1).astype(np.float32),
        table=rng.random(1024).astype(np.float32),
        rng=rng, size=size,
    )  # fmt: skip
    image = np.empty((size, size, 3), np.float32)
    for c in np.unique(cmap):
        m = cmap == c
        image[m] = _P2_TEXTURES[c](scene, m)
    image *= rng.uniform(0.88, 1.12) * (1 + rng.normal(0, 0.03, 3)).astype(np.float32)  # light, season
    return np.clip(image + 0.5, 0, 255).astype(np.uint8), cmap
