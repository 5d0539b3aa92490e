"""Pre-logit extraction and 2-D projections: shapes, values, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits
from torch import nn

from hw1lib.features import extract_features, project_pca, project_tsne


class _TinyClassifier(nn.Module):
    """The classifier interface of the project (timm's): forward_features, forward_head(pre_logits)."""

    def __init__(self, dim: int = 6, classes: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, dim, 3, padding=1)
        self.fc = nn.Linear(dim, classes)

    def forward_features(self, x):
        return self.conv(x)

    def forward_head(self, x, pre_logits: bool = False):
        x = x.mean(dim=(2, 3))
        return x if pre_logits else self.fc(x)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


def test_extract_features_returns_pre_logits_in_order():
    torch.manual_seed(0)
    model = _TinyClassifier().train()
    images = torch.randint(0, 256, (10, 3, 8, 8), dtype=torch.uint8)
    feats = extract_features(model, images, batch_size=4)
    assert feats.shape == (10, 6) and feats.dtype == np.float32
    with torch.no_grad():
        expected = model.forward_head(model.forward_features(images.float() / 255), pre_logits=True)
    np.testing.assert_allclose(feats, expected.numpy(), rtol=1e-5, atol=1e-6)
    assert model.training  # the caller's mode is restored


def test_extract_features_scales_uint8_to_unit_range():
    model = _TinyClassifier()
    with torch.no_grad():
        model.conv.weight.zero_()
        model.conv.bias.zero_()
        model.conv.weight[0, 0, 1, 1] = 1.0  # feature 0 = mean of the red channel (interior pixels)
    white = torch.full((2, 3, 4, 4), 255, dtype=torch.uint8)
    feats = extract_features(model, white)
    assert feats[:, 0] == pytest.approx([1.0, 1.0])


def test_extract_features_rejects_float_images_and_other_models():
    with pytest.raises(ValueError, match="uint8"):
        extract_features(_TinyClassifier(), torch.zeros(2, 3, 4, 4))
    with pytest.raises(TypeError, match="forward_features"):
        extract_features(nn.Conv2d(3, 3, 1), torch.zeros(2, 3, 4, 4, dtype=torch.uint8))


def _blobs(n: int = 60, d: int = 64) -> np.ndarray:
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 5, (3, d))
    return (centres[np.arange(n) % 3] + rng.normal(size=(n, d))).astype(np.float32)


def test_project_pca_shape_order_and_determinism():
    feats = _blobs()
    a, b = project_pca(feats, seed=1), project_pca(feats, seed=1)
    assert a.shape == (60, 2) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert a[:, 0].var() >= a[:, 1].var()  # first axis carries the most variance


def test_project_tsne_shape_determinism_and_tiny_sets():
    feats = _blobs()  # D = 64 > 50: goes through PCA first
    # one OpenMP thread: on a busy shared CPU, t-SNE's threads wait on each other (10x slower); results match
    with threadpool_limits(1, user_api="openmp"):
        _check_tsne(feats)


def _check_tsne(feats: np.ndarray) -> None:
    a, b = project_tsne(feats, seed=0, max_iter=250), project_tsne(feats, seed=0, max_iter=250)
    assert a.shape == (60, 2) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    tiny = project_tsne(feats[:7], seed=0, perplexity=30.0, max_iter=250)  # perplexity clipped below N/3
    assert tiny.shape == (7, 2) and np.isfinite(tiny).all()
    with pytest.raises(ValueError, match="NaN"):
        project_tsne(np.full((10, 3), np.nan))


def test_project_pca_reports_explained_variance():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(200, 5)) * np.array([10.0, 3.0, 0.1, 0.1, 0.1])
    projected, explained = project_pca(features, return_explained=True)
    assert projected.shape == (200, 2) and explained.shape == (2,)
    assert explained[0] > explained[1] > 0 and 0.95 < explained.sum() <= 1.0


def test_identical_features_are_refused_instead_of_crashing_tsne():
    with pytest.raises(ValueError, match="identical for every sample"):
        project_tsne(np.zeros((20, 8)))
    with pytest.raises(ValueError, match="identical for every sample"):
        project_pca(np.ones((20, 8)))
