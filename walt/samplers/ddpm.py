"""Ancestral DDPM sampler (Ho, Jain & Abbeel 2020) on a strided timestep list."""

from __future__ import annotations

from typing import Literal

from torch import Tensor
from typing_extensions import Unpack

from walt.samplers.base import NoiseFn, Sampler, SamplerArgs

Variance = Literal["small", "large"]


class DDPMSampler(Sampler):
    """Ancestral sampling from the posterior ``q(x_prev | x_t, x0^)``.

    With fewer steps than training steps, the per-step ``alpha = abar_t / abar_prev`` and
    ``beta = 1 - alpha`` of the strided chain are used (Nichol & Dhariwal 2021, Sec. 4).

    Args:
        variance: ``"small"`` (posterior variance ``beta~``, Ho et al. eq. 7) or ``"large"``
            (``beta``); Ho et al. Sec. 3.2 found both similar.
        **common: the arguments every sampler takes (:class:`~walt.samplers.base.Sampler`).
    """

    def __init__(self, *, variance: Variance = "small", **common: Unpack[SamplerArgs]) -> None:
        if variance not in ("small", "large"):
            raise ValueError(f"unknown variance {variance!r}; expected 'small' or 'large'")
        self.variance: Variance = variance
        super().__init__(**common)

    def update(
        self, sample: Tensor, x0: Tensor, eps: Tensor, current: int, prev: int, noise: NoiseFn
    ) -> Tensor:
        """Ho et al. eq. 6/7: ``x_prev = mu~(x_t, x0^) + sqrt(var) z`` with::

            mu~ = sqrt(abar_prev) beta_t / (1 - abar_t) x0^
                  + sqrt(alpha_t) (1 - abar_prev) / (1 - abar_t) x_t
            beta~ = (1 - abar_prev) / (1 - abar_t) beta_t

        No noise is added after the last timestep (``abar_prev = 1``, ``beta~ = 0``).
        """
        abar_t, abar_prev = self.abar(current), self.abar(prev)
        alpha_t = abar_t / abar_prev
        beta_t = 1.0 - alpha_t
        x0_coef = abar_prev**0.5 * beta_t / (1.0 - abar_t)
        xt_coef = alpha_t**0.5 * (1.0 - abar_prev) / (1.0 - abar_t)
        prev_sample = x0_coef * x0 + xt_coef * sample
        if prev >= 0:
            small = (1.0 - abar_prev) / (1.0 - abar_t) * beta_t
            var = small if self.variance == "small" else beta_t
            prev_sample = prev_sample + var**0.5 * noise()
        return prev_sample
