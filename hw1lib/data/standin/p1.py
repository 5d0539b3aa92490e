"""The stand-in's Problem 1 renderer: 32x32 images of 10 shapes in 5 styles (50 classes).

A class is one shape (circle, square, triangle, star, cross, ring, bars, checker, crescent, chevron) in one
style (warm solid, warm striped, cool solid, cool striped, green dotted); ``label = 10 * style + shape``.
Position, scale, a tilt of up to about 23 degrees, hue, saturation, brightness, shading, background colour,
clutter shapes, lines and noise vary per image.

Why these choices (generator version 2): the stand-in should teach what the real data teaches, so that the demo
report's story is the real one: model A, a small VGG-like net from scratch, learns the shapes from few images per
class, with a curve that rises and flattens, and the pretrained model B lands clearly higher. Shapes are drawn
near upright (as objects in photographs mostly are), on a quiet background, because a small CNN cannot learn
shapes at any rotation from 40 images per class; neighbouring classes (solid vs striped of one hue, circle vs
ring vs crescent) still confuse. What each change measured is in ``benchmarks/RESULTS.md``, "Stand-in calibration".
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Callable

import numpy as np
from PIL import Image

from hw1lib.data.classification import IMAGE_SIZE as P1_IMAGE_SIZE
from hw1lib.data.classification import NUM_CLASSES as P1_CLASSES

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
    corners = corners.mean(-1, keepdims=True) + rng.uniform(0.1, 0.45) * (corners - corners.mean(-1, keepdims=True))
    small = Image.fromarray((corners * 255).astype(np.uint8)).resize((_GRID, _GRID), Image.BILINEAR)
    image = np.asarray(small, dtype=np.float32) / 255  # a fresh, writable array
    for _ in range(rng.integers(0, 3)):  # clutter: tiny shapes of any kind and colour
        shape = P1_SHAPES[_SHAPE_NAMES[rng.integers(len(_SHAPE_NAMES))]]
        u, v = _object_coords(*rng.uniform(0, 32, 2), rng.uniform(1.2, 2.5), rng.uniform(0, 2 * math.pi))
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
    u, v = _object_coords(*rng.uniform(11, 21, 2), rng.uniform(8.5, 12.0), rng.uniform(-0.4, 0.4))  # upright
    colour = _hsv(rng, hue, (0.5, 1.0), (0.5, 1.0))
    image = np.where(shape(u, v)[..., None], _p1_fill(texture, u, v, colour, rng), image)
    image = image.reshape(P1_IMAGE_SIZE, _SS, P1_IMAGE_SIZE, _SS, 3).mean(axis=(1, 3))
    image = image + rng.normal(0, rng.uniform(0.02, 0.07), image.shape)
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
