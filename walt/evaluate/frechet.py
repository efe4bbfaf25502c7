"""Fréchet distance and Inception Score on features that were already extracted.

Both use torchmetrics' implementations (``FrechetInceptionDistance``, ``InceptionScore``) with an
identity "feature extractor", so the matrix square root and the KL terms are the library's, while
features are extracted once and re-used by every random draw.

Fréchet distance (Heusel et al. 2017; Unterthiner et al. 2018 for video): with ``(mu, Sigma)`` the
mean and covariance of each feature set,
``d^2 = |mu_1 - mu_2|^2 + tr(Sigma_1 + Sigma_2 - 2 (Sigma_1 Sigma_2)^(1/2))``. torchmetrics
estimates the covariances with the ``N - 1`` denominator (StyleGAN-V uses ``N``; the two differ
by a factor ``N / (N - 1)`` on the covariances, negligible at the usual 2048 samples).
"""

from __future__ import annotations

import warnings

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.inception import InceptionScore


class Precomputed(nn.Module):
    """Identity feature extractor: hands torchmetrics features computed elsewhere.

    Args:
        num_features: width D of the feature rows.
    """

    def __init__(self, *, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def frechet_distance(first: torch.Tensor, second: torch.Tensor) -> float:
    """Fréchet distance between the Gaussians fitted to two feature sets ``(N, D)`` and ``(M, D)``."""
    for name, x in (("first", first), ("second", second)):
        if x.ndim != 2 or x.shape[0] < 2:
            raise ValueError(f"{name} must be (N, D) features with N >= 2, got {tuple(x.shape)}")
    if first.shape[1] != second.shape[1]:
        raise ValueError(f"feature widths differ: first {first.shape[1]}, second {second.shape[1]}")
    metric = FrechetInceptionDistance(feature=Precomputed(num_features=first.shape[1]))
    metric.update(first.double(), real=True)
    metric.update(second.double(), real=False)
    return float(metric.compute())


def inception_score(logits: torch.Tensor) -> float:
    """Inception Score ``exp(E_x KL(p(y|x) || p(y)))`` of ``(N, K)`` class logits, one split."""
    if logits.ndim != 2 or logits.shape[0] < 1:
        raise ValueError(f"logits must be (N, K) with N >= 1, got {tuple(logits.shape)}")
    with warnings.catch_warnings():
        # The memory warning and the std of a single split (NaN, unused) are expected here.
        warnings.simplefilter("ignore", UserWarning)
        metric = InceptionScore(feature=Precomputed(num_features=logits.shape[1]), splits=1)
        metric.update(logits.double())
        mean, _ = metric.compute()
    return float(mean)
