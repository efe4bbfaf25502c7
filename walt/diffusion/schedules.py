"""Noise schedules of the discrete Gaussian diffusion process.

The forward process (Ho et al. 2020, eq. 4) is ``q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)``
with ``abar_t = prod_{s <= t} (1 - beta_s)`` for integer ``t`` in ``[0, num_train_timesteps - 1]``.
Everything here is float64 so that the tiny ``abar_t`` near the end of a zero-terminal-SNR
schedule keep their relative precision; callers cast coefficients to the data dtype.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

ScheduleKind = Literal["linear", "scaled_linear", "cosine"]
SCHEDULE_KINDS: tuple[str, ...] = ("linear", "scaled_linear", "cosine")


def _check_betas(betas: Tensor) -> None:
    if betas.ndim != 1 or betas.numel() < 2:
        raise ValueError(
            f"betas must be a 1-D tensor with at least 2 entries, got {tuple(betas.shape)}"
        )
    if bool((betas <= 0).any()) or bool((betas > 1).any()):
        raise ValueError("betas must lie in (0, 1]")


def cosine_betas(num_train_timesteps: int, *, s: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """Cosine schedule of Nichol & Dhariwal 2021 (eq. 17).

    ``abar(t) = f(t) / f(0)`` with ``f(t) = cos^2(((t / T) + s) / (1 + s) * pi / 2)`` and
    ``beta_t = min(1 - abar(t + 1) / abar(t), max_beta)``; the clip keeps the last step finite.
    """

    def f(t: float) -> float:
        return math.cos((t / num_train_timesteps + s) / (1 + s) * math.pi / 2) ** 2

    betas = [min(1.0 - f(i + 1) / f(i), max_beta) for i in range(num_train_timesteps)]
    return torch.tensor(betas, dtype=torch.float64)


def rescale_zero_terminal_snr(betas: Tensor) -> Tensor:
    """Rescale ``betas`` so that the last step has SNR exactly zero.

    Lin et al. 2023, "Common Diffusion Noise Schedules and Sample Steps are Flawed", Algorithm 1:
    shift ``sqrt(abar)`` so its last value is 0, then scale it so its first value is unchanged,
    and convert back to betas. The last beta becomes 1, i.e. ``x_T`` is pure noise, which closes
    the train/test gap of sampling from ``N(0, I)`` (W.A.L.T: FVD 60.7 against 91.0 without).

    Args:
        betas: ``(num_train_timesteps,)`` betas of any float dtype.

    Returns:
        ``(num_train_timesteps,)`` float64 rescaled betas.
    """
    _check_betas(betas)
    sqrt_abar = torch.cumprod(1.0 - betas.to(torch.float64), dim=0).sqrt()
    first, last = sqrt_abar[0].clone(), sqrt_abar[-1].clone()
    if not bool(first > last):
        raise ValueError("betas give a constant abar; cannot rescale to zero terminal SNR")
    sqrt_abar = (sqrt_abar - last) * (first / (first - last))
    abar = sqrt_abar**2
    alphas = torch.cat([abar[:1], abar[1:] / abar[:-1]])
    return 1.0 - alphas


def make_betas(
    kind: ScheduleKind = "linear",
    num_train_timesteps: int = 1000,
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
    rescale_zero_snr: bool = True,
) -> Tensor:
    """Build the betas of a schedule.

    Args:
        kind: ``"linear"`` (Ho et al. 2020; W.A.L.T's default, 1e-4 -> 0.02 over 1000 steps),
            ``"scaled_linear"`` (linear in sqrt(beta), as in latent diffusion) or ``"cosine"``
            (Nichol & Dhariwal 2021; ``beta_start``/``beta_end`` are unused).
        num_train_timesteps: number of training steps ``T``.
        beta_start: first beta for the linear kinds.
        beta_end: last beta for the linear kinds.
        rescale_zero_snr: apply :func:`rescale_zero_terminal_snr` (Lin et al. 2023).

    Returns:
        ``(num_train_timesteps,)`` float64 betas.
    """
    if num_train_timesteps < 2:
        raise ValueError(f"num_train_timesteps must be >= 2, got {num_train_timesteps}")
    if kind == "linear":
        betas = torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float64)
    elif kind == "scaled_linear":
        betas = torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=torch.float64) ** 2
    elif kind == "cosine":
        betas = cosine_betas(num_train_timesteps)
    else:
        raise ValueError(f"unknown schedule kind {kind!r}; expected one of {SCHEDULE_KINDS}")
    _check_betas(betas)
    return rescale_zero_terminal_snr(betas) if rescale_zero_snr else betas


def alphas_cumprod(betas: Tensor) -> Tensor:
    """``abar_t = prod_{s <= t} (1 - beta_s)`` in float64, shape ``(num_train_timesteps,)``."""
    _check_betas(betas)
    return torch.cumprod(1.0 - betas.to(torch.float64), dim=0)


def alpha_sigma(abar: Tensor) -> tuple[Tensor, Tensor]:
    """Signal and noise scales ``(alpha_t, sigma_t) = (sqrt(abar_t), sqrt(1 - abar_t))``."""
    return abar.sqrt(), (1.0 - abar).clamp_min(0.0).sqrt()


def snr(abar: Tensor) -> Tensor:
    """Signal-to-noise ratio ``abar / (1 - abar)`` (Kingma et al. 2021); 0 at zero terminal SNR."""
    return abar / (1.0 - abar)


def log_snr(abar: Tensor) -> Tensor:
    """``log SNR = log(abar) - log(1 - abar)``; ``-inf`` where ``abar == 0``."""
    return abar.log() - torch.log1p(-abar)
