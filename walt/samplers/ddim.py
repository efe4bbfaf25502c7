"""DDIM sampler (Song, Meng & Ermon 2021, "Denoising Diffusion Implicit Models").

W.A.L.T samples with 50 deterministic DDIM steps (eta = 0).
"""

from __future__ import annotations

from torch import Tensor
from typing_extensions import Unpack

from walt.samplers.base import NoiseFn, Sampler, SamplerArgs


class DDIMSampler(Sampler):
    """DDIM with stochasticity ``eta`` (0: deterministic DDIM, 1: DDPM-like ancestral noise).

    Args:
        eta: DDIM's ``eta`` in eq. 16.
        **common: the arguments every sampler takes (:class:`~walt.samplers.base.Sampler`:
            ``betas``, ``prediction``, ``num_inference_steps`` (W.A.L.T: 50),
            ``timestep_spacing``, ``steps_offset``, ``clip_x0``).
    """

    def __init__(self, *, eta: float = 0.0, **common: Unpack[SamplerArgs]) -> None:
        if eta < 0:
            raise ValueError(f"eta must be >= 0, got {eta}")
        self.eta = eta
        super().__init__(**common)

    def update(
        self, sample: Tensor, x0: Tensor, eps: Tensor, current: int, prev: int, noise: NoiseFn
    ) -> Tensor:
        """DDIM update, Song et al. eq. 12 with ``sigma_t(eta)`` of eq. 16::

            x_prev = sqrt(abar_prev) x0^ + sqrt(1 - abar_prev - sigma^2) eps^ + sigma z
            sigma^2 = eta^2 (1 - abar_prev) / (1 - abar_t) (1 - abar_t / abar_prev)

        After the last timestep ``abar_prev = 1``, so the output is the x0 estimate.
        """
        abar_t, abar_prev = self.abar(current), self.abar(prev)
        variance = (1.0 - abar_prev) / (1.0 - abar_t) * (1.0 - abar_t / abar_prev)
        std = self.eta * variance**0.5
        direction = max(1.0 - abar_prev - std**2, 0.0) ** 0.5
        prev_sample = abar_prev**0.5 * x0 + direction * eps
        if std > 0:
            prev_sample = prev_sample + std * noise()
        return prev_sample
