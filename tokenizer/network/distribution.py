"""Diagonal Gaussian posterior of the continuous (KL-regularised) latent.

W.A.L.T uses MAGVIT-v2's tokenizer without quantization; we regularise the real-valued latent
with a KL term to a standard normal, as in LDM-style VAEs (the W.A.L.T paper does not state
whether a KL term is used; see docs/tokenizer.md).
"""

from __future__ import annotations

import torch


class DiagonalGaussian:
    """Gaussian with diagonal covariance from ``moments`` (B, 2c, t, h, w) = [mean, logvar].

    Args:
        moments: concatenated mean and log-variance along dim 1.
    """

    def __init__(self, moments: torch.Tensor) -> None:
        self.mean, logvar = moments.chunk(2, dim=1)
        # clamp keeps exp() finite early in training
        self.logvar = logvar.clamp(-30.0, 20.0)
        self.std = torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(
            self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype
        )
        return self.mean + self.std * noise

    def mode(self) -> torch.Tensor:
        return self.mean

    def kl(self) -> torch.Tensor:
        """KL(q || N(0, I)) per element, averaged over all but the batch: shape (B,)."""
        per = 0.5 * (self.mean.pow(2) + self.logvar.exp() - 1.0 - self.logvar)
        return per.flatten(1).mean(dim=1)
