"""A generated stand-in for the homework data, written in exactly the layout of the course's archive.

What it is: synthetic data that lets every loader, model, notebook and CLI command run where the real
``hw1_data`` is absent. The real loaders read it like real data; nothing anywhere special-cases it.

- Problem 1: 50 classes of 32x32 RGB images. A class is one of 10 shapes (circle, square, triangle, star,
  cross, ring, bars, checker, crescent, chevron) in one of 5 styles (warm solid, warm striped, cool solid,
  cool striped, green dotted); ``label = 10 * style + shape``. Position, scale, rotation, hue, shading,
  background colour, small clutter shapes, lines and noise vary per image, so a small CNN learns the
  classes, not at once, and confuses neighbours (striped vs solid, circle vs ring vs crescent).
- Problem 2: land-cover-like scenes: warped Voronoi regions of the base classes with forest and water
  blobs, rivers and rare no-data corners laid over them; each class has its own colour and texture
  (fields and rows for agriculture, street grids for urban, fine dark grain for forest, smooth water),
  with overlapping colours (rangeland lies between agriculture and forest). Pixel shares roughly follow
  DeepGlobe's (agriculture over half, water and unknown rare). Masks use the official palette.

What it is not: a model of the real images' statistics. Numbers measured on it show that the pipeline
works, not how a model would score on the real data.

Every image draws from its own random generator seeded by ``(seed, problem, split, label, id)``, so the
output is byte-identical for a seed whatever the number of worker processes. Files are written into a
temporary sibling folder that is renamed into place at the end, with a ``standin.json`` manifest that
lets a second call with the same parameters return at once.
"""

from __future__ import annotations

import colorsys
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from hw1lib.data.palette import encode_mask

#: bump when the generated content changes, so an old stand-in is not silently reused
GENERATOR_VERSION = 1
MANIFEST_NAME = "standin.json"

P1_CLASSES = 50
P1_IMAGE_SIZE = 32
P1_VAL_FIRST_ID = 450  # as in the real archive: train ids 0..449, val ids 450..499 per class
JPEG_QUALITY = 90


@dataclass(frozen=True)
class StandinSize:
    """How much stand-in data to write.

    Attributes:
        p1_train_per_class: P1 training images per class (ids ``0..n-1``).
        p1_val_per_class: P1 validation images per class (ids ``450..450+n-1``).
        p2_train_count: P2 training pairs (ids ``0000..n-1``).
        p2_val_ids: P2 validation pair ids (the report shows 0013, 0062 and 0104).
        p2_image_size: side of the square P2 images and masks, in pixels.
    """

    p1_train_per_class: int
    p1_val_per_class: int
    p2_train_count: int
    p2_val_ids: tuple[int, ...]
    p2_image_size: int


STANDIN_SIZES: dict[str, StandinSize] = {
    "smoke": StandinSize(8, 2, 8, (0, 1, 2, 13, 62, 104, 256), 64),
    "demo": StandinSize(40, 10, 96, (*range(28), 62, 104, 150, 256), 128),
    "full": StandinSize(450, 50, 2000, tuple(range(257)), 512),  # the real archive's counts and size
}


# --------------------------------------------------------------------------------------------------
# Problem 1: shapes in styles
# --------------------------------------------------------------------------------------------------

_SS = 2  # supersampling: shapes are drawn on a 64x64 grid and averaged down, which anti-aliases edges
_GRID = P1_IMAGE_SIZE * _SS
_PY, _PX = (np.mgrid[0:_GRID, 0:_GRID].astype(np.float32) + 0.5) / _SS  # pixel coordinates, 0..32

ShapeFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _triangle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    angles = (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)  # outward edge normals; inradius 0.5
    return np.max([u * math.cos(a) + v * math.sin(a) for a in angles], axis=0) < 0.5


def _star(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    r, phi = np.hypot(u, v), np.arctan2(v, u)
    return r < 0.42 + 0.55 * np.abs(np.cos(2.5 * phi)) ** 3


def _checker(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    inside = (np.abs(u) < 0.9) & (np.abs(v) < 0.9)
    return inside & ((np.floor((u + 0.9) / 0.6) + np.floor((v + 0.9) / 0.6)) % 2 == 0)


#: shape name -> inside test on object coordinates (the shape spans about [-1, 1])
P1_SHAPES: dict[str, ShapeFn] = {
    "circle": lambda u, v: u * u + v * v < 0.85**2,
    "square": lambda u, v: np.maximum(np.abs(u), np.abs(v)) < 0.72,
    "triangle": _triangle,
    "star": _star,
    "cross": lambda u, v: (np.minimum(np.abs(u), np.abs(v)) < 0.28) & (np.maximum(np.abs(u), np.abs(v)) < 0.95),
    "ring": lambda u, v: (u * u + v * v > 0.55**2) & (u * u + v * v < 0.95**2),
    "bars": lambda u, v: (np.abs(u) < 0.95) & (np.abs(v) > 0.2) & (np.abs(v) < 0.68),
    "checker": _checker,
    "crescent": lambda u, v: (u * u + v * v < 0.95**2) & (np.hypot(u - 0.45, v + 0.1) > 0.72),
    "chevron": lambda u, v: (np.abs(v + 0.3 - 0.9 * np.abs(u)) < 0.27) & (np.abs(u) < 0.9),
}
#: style name -> (hue range, fill texture)
P1_STYLES: dict[str, tuple[tuple[float, float], str]] = {
    "warm solid": ((-0.03, 0.11), "solid"),
    "warm striped": ((-0.03, 0.11), "striped"),
    "cool solid": ((0.52, 0.68), "solid"),
    "cool striped": ((0.52, 0.68), "striped"),
    "green dotted": ((0.24, 0.40), "dotted"),
}
_SHAPE_NAMES = tuple(P1_SHAPES)
_STYLE_NAMES = tuple(P1_STYLES)


def describe_p1_class(label: int) -> str:
    """The stand-in's meaning of a P1 label, e.g. ``describe_p1_class(13) == 'warm striped star'``."""
    if not 0 <= label < P1_CLASSES:
        raise ValueError(f"label must lie in 0..{P1_CLASSES - 1}, got {label}")
    return f"{_STYLE_NAMES[label // 10]} {_SHAPE_NAMES[label % 10]}"


def _object_coords(cx: float, cy: float, radius: float, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """Grid coordinates in an object's frame: centred, rotated by ``theta``, scaled by ``radius``."""
    dx, dy = (_PX - cx) / radius, (_PY - cy) / radius
    c, s = math.cos(theta), math.sin(theta)
    return dx * c + dy * s, -dx * s + dy * c


def _hsv(rng: np.random.Generator, hue: tuple[float, float], sat: tuple[float, float], val: tuple[float, float]):
    return np.array(colorsys.hsv_to_rgb(rng.uniform(*hue) % 1.0, rng.uniform(*sat), rng.uniform(*val)), np.float32)


def _p1_background(rng: np.random.Generator) -> np.ndarray:
    """A smooth, low-saturation colour field with small clutter shapes and thin lines."""
    corners = rng.uniform(0.12, 0.88, (3, 3, 3))
    corners = corners.mean(-1, keepdims=True) + rng.uniform(0.2, 0.6) * (corners - corners.mean(-1, keepdims=True))
    small = Image.fromarray((corners * 255).astype(np.uint8)).resize((_GRID, _GRID), Image.BILINEAR)
    image = np.asarray(small, dtype=np.float32) / 255  # a fresh, writable array
    for _ in range(rng.integers(1, 5)):  # clutter: tiny shapes of any kind and colour
        shape = P1_SHAPES[_SHAPE_NAMES[rng.integers(len(_SHAPE_NAMES))]]
        u, v = _object_coords(*rng.uniform(0, 32, 2), rng.uniform(1.5, 3.5), rng.uniform(0, 2 * math.pi))
        image[shape(u, v)] = _hsv(rng, (0, 1), (0.2, 1), (0.3, 1))
    for _ in range(rng.integers(0, 3)):  # thin lines across the frame
        u, v = _object_coords(*rng.uniform(0, 32, 2), 1.0, rng.uniform(0, 2 * math.pi))
        line = (np.abs(v) < rng.uniform(0.35, 0.8)) & (np.abs(u) < rng.uniform(5, 16))
        image[line] = _hsv(rng, (0, 1), (0, 0.8), (0.2, 1))
    return image


def _p1_fill(texture: str, u: np.ndarray, v: np.ndarray, colour: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The object's pixels: its colour with directional shading and the style's texture."""
    light = rng.uniform(0, 2 * math.pi)
    fill = colour * (1 + 0.25 * (u * math.cos(light) + v * math.sin(light)))[..., None]
    if texture == "striped":
        stripes = np.sin(u * 2.4 * math.pi + rng.uniform(0, 2 * math.pi)) > 0
        fill = np.where(stripes[..., None], fill, 0.35 * fill)
    elif texture == "dotted":
        dots = np.sin(u * 2.6 * math.pi) * np.sin(v * 2.6 * math.pi) > 0.35
        fill = np.where(dots[..., None], 0.4 * fill + 0.6, fill)
    return fill


def render_p1_image(label: int, rng: np.random.Generator) -> np.ndarray:
    """Draw one 32x32 uint8 RGB image of class ``label``."""
    shape = P1_SHAPES[_SHAPE_NAMES[label % 10]]
    hue, texture = P1_STYLES[_STYLE_NAMES[label // 10]]
    image = _p1_background(rng)
    u, v = _object_coords(*rng.uniform(9, 23, 2), rng.uniform(6.5, 11.5), rng.uniform(0, 2 * math.pi))
    colour = _hsv(rng, hue, (0.5, 1.0), (0.5, 1.0))
    image = np.where(shape(u, v)[..., None], _p1_fill(texture, u, v, colour, rng), image)
    image = image.reshape(P1_IMAGE_SIZE, _SS, P1_IMAGE_SIZE, _SS, 3).mean(axis=(1, 3))
    image = image + rng.normal(0, rng.uniform(0.02, 0.07), image.shape)
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)


# --------------------------------------------------------------------------------------------------
# Problem 2: land-cover scenes
# --------------------------------------------------------------------------------------------------

URBAN, AGRICULTURE, RANGELAND, FOREST, WATER, BARREN, UNKNOWN = range(7)
#: base classes of the Voronoi regions and their average share before forest/water overlays
_BASE_CLASSES = np.array([URBAN, AGRICULTURE, RANGELAND, FOREST, BARREN])
_BASE_SHARES = np.array([0.12, 0.60, 0.11, 0.06, 0.11])


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
    bump) and upsampled once: several times faster at 512 px.
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
    wx = x + 0.09 * _fractal(rng, size, 3, 4)  # domain warp: curvy, wiggly region borders
    wy = y + 0.09 * _fractal(rng, size, 3, 4)
    n = int(rng.integers(4, 13))
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
    if rng.random() < 0.4:  # forest patches
        cmap[_fractal(rng, size, 4, 3) > rng.uniform(0.7, 1.6)] = FOREST
    if rng.random() < 0.25:  # lakes
        cmap[_fractal(rng, size, 2, 3) > rng.uniform(1.0, 1.9)] = WATER
    if rng.random() < 0.15:  # a river: a wavy band across the image
        a = rng.uniform(0, math.pi)
        across = (x - 0.5) * math.sin(a) - (y - 0.5) * math.cos(a) + 0.08 * _fractal(rng, size, 2, 3)
        cmap[np.abs(across - rng.uniform(-0.3, 0.3)) < rng.uniform(0.01, 0.04)] = WATER
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
    """Parcels of green and tan fields with ploughed rows, oriented per region."""
    u, w, reg = _rotated(scene, m)
    size = scene.rng.uniform(0.05, 0.16)
    pu, pw = np.floor(u / size), np.floor(w / (size * scene.rng.uniform(0.5, 1.5)))
    pick = _hash01(scene.table, pu, pw, reg)[:, None]
    green, tan = _colour((118, 138, 72), scene), _colour((168, 152, 104), scene)
    base = green * pick + tan * (1 - pick)
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
    base = _colour((128, 124, 122), scene) * roof[:, None]
    base[road] = _colour((160, 158, 152), scene)
    trees = scene.crowns[m] > 1.3
    base[trees] = _colour((70, 92, 58), scene)
    return base * (1 + 0.12 * scene.grain[m])[:, None]


def _rangeland(scene: _Scene, m: np.ndarray) -> np.ndarray:
    """Olive-tan blotchy ground with dark shrubs: between agriculture and forest in colour."""
    base = np.broadcast_to(_colour((130, 128, 84), scene, 0.1), (int(m.sum()), 3)).copy()
    base[scene.crowns[m] > 1.5] = _colour((78, 94, 56), scene)
    return base * (1 + 0.14 * scene.blotch[m] + 0.05 * scene.grain[m])[:, None]


def _forest(scene: _Scene, m: np.ndarray) -> np.ndarray:
    """Dark green canopy with a fine crown texture."""
    shade = 1 + 0.22 * scene.crowns[m] + 0.1 * scene.blotch[m] + 0.08 * scene.grain[m]
    return _colour((52, 78, 44), scene, 0.12) * shade[:, None]


def _water(scene: _Scene, m: np.ndarray) -> np.ndarray:
    """Smooth dark blue, sometimes turbid green, with almost no texture."""
    turbid = scene.rng.uniform(0, 0.7)
    base = (1 - turbid) * _colour((38, 60, 92), scene) + turbid * _colour((64, 88, 78), scene)
    return base * (1 + 0.05 * scene.blotch[m] + 0.02 * scene.grain[m])[:, None]


def _barren(scene: _Scene, m: np.ndarray) -> np.ndarray:
    """Light sand and rock with soft streaks."""
    u, _, _ = _rotated(scene, m)
    streaks = 0.05 * np.sin(2 * math.pi * u / scene.rng.uniform(0.05, 0.15))
    shade = 1 + 0.12 * scene.blotch[m] + 0.06 * scene.grain[m] + streaks
    return _colour((176, 160, 134), scene, 0.1) * shade[:, None]


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


# --------------------------------------------------------------------------------------------------
# Writing: jobs, workers, manifest, atomic rename
# --------------------------------------------------------------------------------------------------

_PROBLEM_TAG = {"p1": 1, "p2": 2}
_SPLIT_TAG = {"train": 0, "val": 1}


def _image_rng(seed: int, problem: str, split: str, *ints: int) -> np.random.Generator:
    """The generator of one image: independent of order and of the worker that draws it."""
    return np.random.default_rng([seed, _PROBLEM_TAG[problem], _SPLIT_TAG[split], *ints])


@dataclass(frozen=True)
class _Job:
    """A batch of images that one worker writes: one P1 class of a split, or a run of P2 ids."""

    problem: str
    split: str
    folder: str
    seed: int
    ids: tuple[int, ...]
    label: int = 0
    size: int = P1_IMAGE_SIZE


def _run_job(job: _Job) -> int:
    folder = Path(job.folder)
    for i in job.ids:
        rng = _image_rng(job.seed, job.problem, job.split, job.label, i)
        if job.problem == "p1":
            Image.fromarray(render_p1_image(job.label, rng)).save(folder / f"{job.label}_{i}.png")
        else:
            image, cmap = render_p2_pair(rng, job.size)
            Image.fromarray(image).save(folder / f"{i:04d}_sat.jpg", quality=JPEG_QUALITY)
            Image.fromarray(encode_mask(cmap)).save(folder / f"{i:04d}_mask.png")
    return len(job.ids)


def _jobs(root: Path, spec: StandinSize, seed: int) -> list[_Job]:
    """All the work, largest first so that worker processes finish together."""
    p1_train, p1_val = root / "p1_data" / "train_50", root / "p1_data" / "val_50"
    p2_train, p2_val = root / "p2_data" / "train", root / "p2_data" / "validation"
    chunk = 8
    p2_ids = {"train": tuple(range(spec.p2_train_count)), "val": spec.p2_val_ids}
    jobs = [
        _Job("p2", split, str(folder), seed, ids[k : k + chunk], size=spec.p2_image_size)
        for split, folder in (("train", p2_train), ("val", p2_val))
        for ids in [p2_ids[split]]
        for k in range(0, len(ids), chunk)
    ]
    train_ids = tuple(range(spec.p1_train_per_class))
    val_ids = tuple(range(P1_VAL_FIRST_ID, P1_VAL_FIRST_ID + spec.p1_val_per_class))
    for label in range(P1_CLASSES):
        jobs.append(_Job("p1", "train", str(p1_train), seed, train_ids, label=label))
        jobs.append(_Job("p1", "val", str(p1_val), seed, val_ids, label=label))
    return jobs


def _write_val_gt(root: Path, spec: StandinSize) -> None:
    """``val_gt.csv`` as in the archive: header ``filename,label``, CRLF line endings."""
    rows = ["filename,label"] + [
        f"{label}_{i}.png,{label}"
        for label in range(P1_CLASSES)
        for i in range(P1_VAL_FIRST_ID, P1_VAL_FIRST_ID + spec.p1_val_per_class)
    ]
    (root / "p1_data" / "val_gt.csv").write_bytes(("\r\n".join(rows) + "\r\n").encode())


def _expected_counts(spec: StandinSize) -> dict[str, int]:
    """Files per folder of a complete stand-in (relative folder -> count)."""
    return {
        "p1_data/train_50": P1_CLASSES * spec.p1_train_per_class,
        "p1_data/val_50": P1_CLASSES * spec.p1_val_per_class,
        "p2_data/train": 2 * spec.p2_train_count,
        "p2_data/validation": 2 * len(spec.p2_val_ids),
    }


def _manifest(size: str, seed: int, spec: StandinSize) -> dict:
    spec_dict = asdict(spec)
    spec_dict["p2_val_ids"] = list(spec.p2_val_ids)
    return {"generator": __name__, "version": GENERATOR_VERSION, "size": size, "seed": seed, **spec_dict}


def _read_manifest(folder: Path) -> dict | None:
    try:
        return json.loads((folder / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return None


def _is_complete(folder: Path, spec: StandinSize) -> bool:
    """Every folder holds the expected number of files (a cheap check against later deletions)."""
    if not (folder / "p1_data" / "val_gt.csv").is_file():
        return False
    for sub, count in _expected_counts(spec).items():
        path = folder / sub
        if not path.is_dir() or sum(1 for _ in os.scandir(path)) != count:
            return False
    return True


def _existing_state(out_dir: Path, manifest: dict, spec: StandinSize, overwrite: bool) -> str:
    """``'absent'``, ``'reuse'`` (same complete stand-in) or ``'replace'``; raise when it may not be replaced."""
    if not out_dir.exists():
        return "absent"
    if not out_dir.is_dir():
        raise FileExistsError(f"stand-in output {out_dir} exists and is not a folder; choose another path")
    if not any(out_dir.iterdir()):
        return "replace"
    found = _read_manifest(out_dir)
    if found == manifest and _is_complete(out_dir, spec):
        return "reuse"
    if found is None:
        raise FileExistsError(
            f"{out_dir} is not empty and holds no {MANIFEST_NAME}, so it is not a generated stand-in "
            "(it may be real data). Refusing to write there, even with overwrite=True: choose another folder "
            "or remove it yourself."
        )
    if not overwrite:
        what = {k: found.get(k) for k in ("size", "seed", "p2_image_size", "version")}
        want = {k: manifest[k] for k in what}
        state = "an incomplete stand-in" if found == manifest else f"a different stand-in {what}"
        raise FileExistsError(
            f"{out_dir} already holds {state}; asked for {want}. "
            "Pass overwrite=True (CLI: --overwrite) to replace it, or choose another folder."
        )
    return "replace"


def _summary(out_dir: Path, manifest: dict, spec: StandinSize, seconds: float, reused: bool, workers: int) -> dict:
    return {
        "out_dir": str(out_dir),
        "size": manifest["size"],
        "seed": manifest["seed"],
        "reused": reused,
        "p1": {
            "classes": P1_CLASSES,
            "train": P1_CLASSES * spec.p1_train_per_class,
            "val": P1_CLASSES * spec.p1_val_per_class,
            "image_size": P1_IMAGE_SIZE,
        },
        "p2": {"train": spec.p2_train_count, "validation": len(spec.p2_val_ids), "image_size": spec.p2_image_size},
        "workers": workers,
        "seconds": round(seconds, 3),
    }


def _default_workers(spec: StandinSize) -> int:
    """One process for small stand-ins (start-up costs more than it saves), all cores for large ones."""
    pixels = spec.p2_image_size**2 * (spec.p2_train_count + len(spec.p2_val_ids))
    pixels += P1_IMAGE_SIZE**2 * 8 * P1_CLASSES * (spec.p1_train_per_class + spec.p1_val_per_class)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 1 if pixels < 40_000_000 else max(1, min(cores, 8))


def _execute(jobs: list[_Job], workers: int, progress: bool) -> None:
    from tqdm.auto import tqdm

    total = sum(len(job.ids) for job in jobs)
    with tqdm(total=total, desc="stand-in", unit="img", disable=not progress) as bar:
        if workers <= 1:
            done: Iterator[int] = map(_run_job, jobs)
            for n in done:
                bar.update(n)
            return
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for n in pool.map(_run_job, jobs):
                bar.update(n)


def _move_into_place(tmp: Path, out_dir: Path, state: str) -> None:
    """Rename the finished folder to ``out_dir``; an old stand-in is moved aside first, then deleted."""
    old = None
    if state == "replace":
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
        os.replace(out_dir, old / "content")
    os.rename(tmp, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def generate_standin(
    out_dir: str | Path,
    size: str = "demo",
    seed: int = 0,
    p2_image_size: int | None = None,
    overwrite: bool = False,
    *,
    progress: bool = False,
    workers: int | None = None,
) -> dict:
    """Write a stand-in for ``hw1_data`` (``p1_data/``, ``p2_data/``) into ``out_dir``.

    Args:
        out_dir: the folder to create; it ends up holding ``p1_data``, ``p2_data`` and ``standin.json``.
        size: a key of :data:`STANDIN_SIZES` (``smoke``, ``demo``, ``full``).
        seed: the same seed and size give byte-identical files.
        p2_image_size: overrides the size's P2 image side (pixels).
        overwrite: replace an existing stand-in made with other parameters. A non-empty folder that is
            not a stand-in (no ``standin.json``) is never replaced.
        progress: show a tqdm bar (on stderr); nothing else is printed.
        workers: processes to use; ``None`` picks one for small sizes and all cores for ``full``.

    Returns:
        A summary: ``out_dir``, ``size``, ``seed``, ``reused`` (an identical stand-in was already
        there and nothing was written), ``p1``/``p2`` counts and image sizes, ``workers``, ``seconds``.

    Raises:
        ValueError: unknown size or bad image size.
        FileExistsError: ``out_dir`` holds something else and may not be replaced (the message says why).
    """
    start = time.perf_counter()
    if size not in STANDIN_SIZES:
        raise ValueError(f"unknown stand-in size {size!r}; valid sizes: {', '.join(STANDIN_SIZES)}")
    spec = STANDIN_SIZES[size]
    if p2_image_size is not None:
        if p2_image_size < 16:
            raise ValueError(f"p2_image_size must be at least 16 pixels, got {p2_image_size}")
        spec = replace(spec, p2_image_size=int(p2_image_size))
    out_dir = Path(out_dir).expanduser().absolute()
    manifest = _manifest(size, seed, spec)
    workers = _default_workers(spec) if workers is None else max(1, int(workers))
    state = _existing_state(out_dir, manifest, spec, overwrite)
    if state == "reuse":
        return _summary(out_dir, manifest, spec, time.perf_counter() - start, True, 0)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        for sub in _expected_counts(spec):
            (tmp / sub).mkdir(parents=True)
        _execute(_jobs(tmp, spec, seed), workers, progress)
        _write_val_gt(tmp, spec)
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1) + "\n")  # last: marks it complete
        state = _existing_state(out_dir, manifest, spec, overwrite)  # again: another process may have won
        if state == "reuse":
            return _summary(out_dir, manifest, spec, time.perf_counter() - start, True, workers)
        _move_into_place(tmp, out_dir, state)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already after a successful rename
    return _summary(out_dir, manifest, spec, time.perf_counter() - start, False, workers)
