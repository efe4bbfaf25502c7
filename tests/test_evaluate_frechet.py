"""Fréchet distance and Inception Score against closed forms, and the random draws."""

from __future__ import annotations

import math

import pytest
import torch

from walt.evaluate.draws import draw_indices, frechet_draws, summarize
from walt.evaluate.frechet import frechet_distance, inception_score


def _gaussian(n: int, mean: torch.Tensor, std: torch.Tensor, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return mean + std * torch.randn(n, len(mean), generator=g, dtype=torch.float64)


def test_frechet_matches_closed_form_for_diagonal_gaussians():
    # d^2 = |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)); diagonal S: sum (s1 - s2)^2.
    mu1, mu2 = torch.tensor([0.0, 1.0, -1.0, 2.0]), torch.tensor([1.0, 1.0, 0.5, 0.0])
    s1, s2 = torch.tensor([1.0, 2.0, 0.5, 1.0]), torch.tensor([2.0, 1.0, 0.5, 3.0])
    expected = ((mu1 - mu2) ** 2).sum() + ((s1 - s2) ** 2).sum()  # 7.25 + 6.0
    got = frechet_distance(_gaussian(40_000, mu1, s1, 0), _gaussian(40_000, mu2, s2, 1))
    # Sampling error of the moments at N = 40k is ~1% of the value; 0.25 is ~2%.
    assert got == pytest.approx(expected.item(), abs=0.25)


def test_frechet_matches_closed_form_for_correlated_gaussians():
    # S1 = A diag(a) A^T, S2 = A diag(b) A^T (same eigenvectors): tr term = sum (sqrt a - sqrt b)^2.
    q, _ = torch.linalg.qr(torch.tensor([[2.0, 1.0, 0.0], [1.0, 3.0, 1.0], [0.0, 1.0, 1.0]]))
    a, b = torch.tensor([4.0, 1.0, 0.25]), torch.tensor([1.0, 1.0, 4.0])
    g = torch.Generator().manual_seed(3)
    x = (torch.randn(40_000, 3, generator=g) * a.sqrt()) @ q.T
    y = (torch.randn(40_000, 3, generator=g) * b.sqrt()) @ q.T + torch.tensor([1.0, 0.0, 0.0])
    expected = 1.0 + ((a.sqrt() - b.sqrt()) ** 2).sum().item()  # 1 + 1 + 0 + 2.25
    assert frechet_distance(x.double(), y.double()) == pytest.approx(expected, abs=0.15)


def test_frechet_of_a_set_with_itself_is_zero_and_bad_input_is_named():
    x = _gaussian(500, torch.zeros(5), torch.ones(5), 4)
    assert abs(frechet_distance(x, x)) < 1e-6
    with pytest.raises(ValueError, match="feature widths differ"):
        frechet_distance(x, x[:, :3])
    with pytest.raises(ValueError, match="second must be"):
        frechet_distance(x, x[:1])


def test_inception_score_closed_forms():
    # Confident and uniformly spread over K classes: IS = K. Uniform predictions: IS = 1.
    k = 4
    confident = torch.full((8 * k, k), -30.0)
    confident[torch.arange(8 * k), torch.arange(8 * k) % k] = 30.0
    assert inception_score(confident) == pytest.approx(k, rel=1e-6)
    assert inception_score(torch.zeros(10, k)) == pytest.approx(1.0, rel=1e-9)
    # All images confidently the same class: no diversity, IS = 1.
    same = torch.full((10, k), -30.0)
    same[:, 0] = 30.0
    assert inception_score(same) == pytest.approx(1.0, rel=1e-6)


def test_draws_are_seeded_subsets_and_summaries_use_population_std():
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a = draw_indices(10, draw_size=4, num_draws=3, generator=g1, name="videos")
    b = draw_indices(10, draw_size=4, num_draws=3, generator=g2, name="videos")
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert all(len(set(x.tolist())) == 4 and x.max() < 10 for x in a)
    assert not torch.equal(a[0], a[1]) or not torch.equal(a[1], a[2])
    with pytest.raises(ValueError, match=r"draw_size must be in \[1, 10\] \(10 usable videos\)"):
        draw_indices(10, draw_size=11, num_draws=1, generator=g1, name="videos")
    s = summarize([1.0, 3.0])
    assert (s["mean"], s["std"], s["draws"]) == (2.0, 1.0, [1.0, 3.0])


def test_frechet_draws_spread_and_full_draws_agree():
    x = _gaussian(60, torch.zeros(3), torch.ones(3), 6)
    y = _gaussian(60, torch.ones(3), torch.ones(3), 7)
    full = frechet_draws(x, y, draw_size=None, num_draws=3, seed=0)
    assert full["std"] == 0.0 and full["mean"] == pytest.approx(frechet_distance(y, x))
    sub = frechet_draws(x, y, draw_size=20, num_draws=4, seed=0)
    assert sub["std"] > 0 and len(sub["draws"]) == 4
    assert math.isfinite(sub["mean"])
