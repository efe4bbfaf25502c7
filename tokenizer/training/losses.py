"""Tokenizer losses (MAGVIT-v2 recipe, continuous latent).

- reconstruction: L1 or L2 (weight 5.0 in MAGVIT-v2);
- KL to N(0, I) on the Gaussian posterior (small weight; see docs/tokenizer.md);
- perceptual (weight 0.1), from ``tokenizer.training.perceptual``;
- hinge GAN with an adaptive generator weight (VQGAN, Esser et al. 2021) times 0.1;
- LeCAM regularisation of the discriminator (Tseng et al. 2021), weight 0.001.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def reconstruction_loss(recon: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "l1":
        return (recon - target).abs().mean()
    if kind == "l2":
        return F.mse_loss(recon, target)
    raise ValueError(f"reconstruction loss must be 'l1' or 'l2', got {kind!r}")


def hinge_d_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()


def generator_adv_loss(fake: torch.Tensor) -> torch.Tensor:
    return -fake.mean()


def adaptive_weight(
    nll: torch.Tensor, g_loss: torch.Tensor, last_layer: torch.Tensor, max_weight: float = 1e4
) -> torch.Tensor:
    """||grad nll|| / ||grad g_loss|| at the decoder's last layer (VQGAN's balancing)."""
    g_nll = torch.autograd.grad(nll, last_layer, retain_graph=True)[0]
    g_adv = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    weight = g_nll.norm() / (g_adv.norm() + 1e-4)
    return weight.clamp(0.0, max_weight).detach()


class LeCAM(nn.Module):
    """LeCAM regulariser: keeps D's outputs near EMAs of its outputs on the other domain.

    Args:
        decay: EMA decay of the mean real / fake logits.
    """

    def __init__(self, *, decay: float = 0.999) -> None:
        super().__init__()
        self.decay = decay
        # buffers, so they are checkpointed and resumed with the module
        self.register_buffer("ema_real", torch.zeros(()))
        self.register_buffer("ema_fake", torch.zeros(()))

    @torch.no_grad()
    def update(self, real: torch.Tensor, fake: torch.Tensor) -> None:
        self.ema_real.lerp_(real.detach().float().mean(), 1 - self.decay)
        self.ema_fake.lerp_(fake.detach().float().mean(), 1 - self.decay)

    def forward(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return (
            F.relu(real - self.ema_fake).pow(2).mean() + F.relu(self.ema_real - fake).pow(2).mean()
        )
