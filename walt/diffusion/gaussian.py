"""The Gaussian diffusion training objective: forward process, targets and loss.

Notation and the v/eps/x0 conversions are in :mod:`walt.diffusion.parameterization`.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from common.registry import register
from walt.diffusion import parameterization as param
from walt.diffusion.frame_masks import per_frame
from walt.diffusion.parameterization import Prediction, check_prediction
from walt.diffusion.schedules import ScheduleKind, alphas_cumprod, make_betas, snr

LossWeighting = Literal["none", "min_snr"]


def expand_to(coef: Tensor, ndim: int) -> Tensor:
    """``(B,)`` -> ``(B, 1, ..., 1)`` with ``ndim`` dimensions, to broadcast against data."""
    return coef.reshape(coef.shape[0], *([1] * (ndim - 1)))


@register("diffusion")
class GaussianDiffusion:
    """Discrete-time Gaussian diffusion with v/eps/x0 prediction and min-SNR weighting.

    A plain object (not an ``nn.Module``) so that precision plugins never cast the float64
    schedule; coefficients are gathered per call on the device of ``timesteps`` and cast to the
    data dtype.

    Args:
        num_train_timesteps: number of discrete training steps ``T`` (timesteps are ``0..T-1``).
        schedule: beta schedule kind, see :func:`walt.diffusion.schedules.make_betas`.
        beta_start: first beta of the linear schedules.
        beta_end: last beta of the linear schedules.
        rescale_zero_snr: rescale to zero terminal SNR (Lin et al. 2023); W.A.L.T's default.
        prediction: what the network predicts: ``"v"`` (W.A.L.T), ``"eps"`` or ``"x0"``.
        loss_weighting: ``"none"`` (plain MSE on the prediction) or ``"min_snr"``
            (Hang et al. 2023, "Efficient Diffusion Training via Min-SNR Weighting Strategy").
        min_snr_gamma: the clamp ``gamma`` of min-SNR weighting.
    """

    def __init__(
        self,
        *,
        num_train_timesteps: int = 1000,
        schedule: ScheduleKind = "linear",
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        rescale_zero_snr: bool = True,
        prediction: Prediction = "v",
        loss_weighting: LossWeighting = "none",
        min_snr_gamma: float = 5.0,
    ) -> None:
        if loss_weighting not in ("none", "min_snr"):
            raise ValueError(
                f"unknown loss_weighting {loss_weighting!r}; expected 'none' or 'min_snr'"
            )
        if min_snr_gamma <= 0:
            raise ValueError(f"min_snr_gamma must be > 0, got {min_snr_gamma}")
        self.num_train_timesteps = num_train_timesteps
        self.schedule = schedule
        self.rescale_zero_snr = rescale_zero_snr
        self.prediction: Prediction = prediction
        self.loss_weighting: LossWeighting = loss_weighting
        self.min_snr_gamma = min_snr_gamma
        self.betas = make_betas(schedule, num_train_timesteps, beta_start, beta_end, rescale_zero_snr)
        self.alphas_cumprod = alphas_cumprod(self.betas)
        check_prediction(prediction, self.alphas_cumprod)
        self._tables: dict[torch.device, tuple[Tensor, Tensor, Tensor]] = {}

    def __repr__(self) -> str:
        return (
            f"GaussianDiffusion(num_train_timesteps={self.num_train_timesteps}, schedule={self.schedule!r}, "
            f"rescale_zero_snr={self.rescale_zero_snr}, prediction={self.prediction!r}, "
            f"loss_weighting={self.loss_weighting!r})"
        )

    def __getstate__(self) -> dict[str, object]:
        # Drop the per-device tables: a pickle or deepcopy must not carry CUDA tensors.
        return {**self.__dict__, "_tables": {}}

    # ---------------------------------------------------------------- coefficients
    def _table(self, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
        """``(alpha, sigma, snr)`` tables on ``device``; float64 where supported (not MPS)."""
        if device not in self._tables:
            dtype = torch.float32 if device.type == "mps" else torch.float64
            abar = self.alphas_cumprod.to(device=device, dtype=dtype)
            self._tables[device] = (abar.sqrt(), (1.0 - abar).sqrt(), snr(abar))
        return self._tables[device]

    def _check_timesteps(self, timesteps: Tensor, batch: int) -> None:
        integer = timesteps.dtype in (torch.int64, torch.int32)
        if not integer or timesteps.ndim != 1 or timesteps.shape[0] != batch:
            raise ValueError(
                f"timesteps must be an integer (B,) tensor with B={batch}, "
                f"got {timesteps.dtype} {tuple(timesteps.shape)}"
            )

    def coefficients(self, timesteps: Tensor, like: Tensor) -> tuple[Tensor, Tensor]:
        """``alpha_t, sigma_t`` at integer ``timesteps`` ``(B,)``, shaped ``(B, 1, ...)`` like ``like``."""
        self._check_timesteps(timesteps, like.shape[0])
        alpha, sigma, _ = self._table(timesteps.device)
        a = expand_to(alpha[timesteps], like.ndim).to(like.dtype)
        s = expand_to(sigma[timesteps], like.ndim).to(like.dtype)
        return a, s

    def snr(self, timesteps: Tensor) -> Tensor:
        """Float64 SNR ``abar_t / (1 - abar_t)`` at integer ``timesteps`` ``(B,)``."""
        return self._table(timesteps.device)[2][timesteps]

    # ---------------------------------------------------------------- forward process
    def sample_timesteps(
        self,
        batch: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Uniform integer timesteps ``(batch,)`` in ``[0, T - 1]`` (Ho et al. 2020, Alg. 1)."""
        return torch.randint(
            0, self.num_train_timesteps, (batch,), generator=generator, device=device, dtype=torch.long
        )

    def q_sample(self, x0: Tensor, timesteps: Tensor, noise: Tensor) -> Tensor:
        """Forward process ``x_t = alpha_t x_0 + sigma_t eps`` (Ho et al. 2020, eq. 4)."""
        a, s = self.coefficients(timesteps, x0)
        return a * x0 + s * noise

    def target(self, x0: Tensor, noise: Tensor, timesteps: Tensor) -> Tensor:
        """Regression target: ``v = alpha_t eps - sigma_t x_0`` (Salimans & Ho 2022), eps or x_0."""
        return param.target(self.prediction, x0, noise, *self.coefficients(timesteps, x0))

    # ---------------------------------------------------------------- conversions
    def pred_to_x0(self, pred: Tensor, x_t: Tensor, timesteps: Tensor) -> Tensor:
        """Data estimate from a model output (:func:`~walt.diffusion.parameterization.to_x0`)."""
        return param.to_x0(self.prediction, pred, x_t, *self.coefficients(timesteps, x_t))

    def pred_to_eps(self, pred: Tensor, x_t: Tensor, timesteps: Tensor) -> Tensor:
        """Noise estimate from a model output (:func:`~walt.diffusion.parameterization.to_eps`)."""
        return param.to_eps(self.prediction, pred, x_t, *self.coefficients(timesteps, x_t))

    def pred_to_v(self, pred: Tensor, x_t: Tensor, timesteps: Tensor) -> Tensor:
        """Velocity estimate from a model output (:func:`~walt.diffusion.parameterization.to_v`)."""
        return param.to_v(self.prediction, pred, x_t, *self.coefficients(timesteps, x_t))

    # ---------------------------------------------------------------- loss
    def loss_weights(self, timesteps: Tensor) -> Tensor:
        """Per-sample float64 loss weights ``(B,)`` on the prediction's MSE.

        ``"none"``: 1. ``"min_snr"`` (Hang et al. 2023): the x0-space weight ``min(SNR, gamma)``
        expressed in the prediction's space: x0 ``min(SNR, gamma)``, eps ``min(SNR, gamma) / SNR``,
        v ``min(SNR, gamma) / (SNR + 1)``, because ``||eps - eps^||^2 = SNR ||x0 - x0^||^2`` and
        ``||v - v^||^2 = ||x0 - x0^||^2 / sigma^2 = (SNR + 1) ||x0 - x0^||^2``. At zero terminal
        SNR the v weight at ``timesteps = T - 1`` is 0.
        """
        if self.loss_weighting == "none":
            return torch.ones(timesteps.shape[0], dtype=torch.float64, device=timesteps.device)
        ratio = self.snr(timesteps)
        clamped = ratio.clamp(max=self.min_snr_gamma)
        if self.prediction == "v":
            return clamped / (ratio + 1.0)
        if self.prediction == "eps":
            return clamped / ratio
        return clamped

    def loss_per_sample(
        self, pred: Tensor, x0: Tensor, noise: Tensor, timesteps: Tensor,
        mask: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Weighted masked MSE per sample.

        Args:
            pred: model output ``(B, c, t, h, w)`` (any shape with batch first).
            x0: clean data, same shape.
            noise: the noise used to build ``x_t``, same shape.
            timesteps: integer timesteps ``(B,)``.
            mask: optional non-negative weights: ``(B, t)`` per latent frame, or any shape that
                broadcasts to ``pred`` (e.g. ``(B, 1, t, 1, 1)`` or the full shape).

        Returns:
            ``(loss, valid)``: ``(B,)`` losses in at least float32 (the weighted mean of the
            squared error over each sample's masked elements, times the min-SNR weight) and a
            bool ``(B,)`` telling which samples have any mask weight (others have loss 0).
        """
        if pred.shape != x0.shape or noise.shape != x0.shape:
            raise ValueError(
                f"pred, x0 and noise shapes differ: {tuple(pred.shape)}, {tuple(x0.shape)}, "
                f"{tuple(noise.shape)}"
            )
        # At least float32, so bf16/fp16 inputs do not lose the loss's precision.
        dtype = torch.promote_types(pred.dtype, torch.float32)
        err = (pred.to(dtype) - self.target(x0.to(dtype), noise.to(dtype), timesteps)) ** 2
        weight = self._loss_mask(mask, err)
        dims = tuple(range(1, err.ndim))
        total = weight.sum(dim=dims)
        valid = total > 0
        per_sample = (err * weight).sum(dim=dims) / total.clamp_min(1e-12)
        per_sample = per_sample * self.loss_weights(timesteps).to(per_sample.dtype)
        return per_sample, valid

    def loss(
        self, pred: Tensor, x0: Tensor, noise: Tensor, timesteps: Tensor,
        mask: Tensor | None = None,
    ) -> Tensor:
        """Scalar loss: :meth:`loss_per_sample` averaged over samples with any mask weight.

        With a frame mask, each sample's loss is the mean over its masked elements (so a sample
        with 1 generated frame counts as much as one with 4), then samples are averaged. Samples
        whose mask is all zero are left out of the average; if none has weight the loss is a
        differentiable 0.
        """
        per_sample, valid = self.loss_per_sample(pred, x0, noise, timesteps, mask)
        if not bool(valid.any()):
            return (pred * 0.0).sum().float()
        return per_sample[valid].mean()

    @staticmethod
    def _loss_mask(mask: Tensor | None, err: Tensor) -> Tensor:
        if mask is None:
            return torch.ones_like(err)
        mask = mask.to(device=err.device, dtype=err.dtype)
        if mask.ndim == 2 and err.ndim == 5:
            if mask.shape != (err.shape[0], err.shape[2]):
                raise ValueError(
                    f"a 2-D mask must be per-frame (B, t)={(err.shape[0], err.shape[2])}, "
                    f"got {tuple(mask.shape)}"
                )
            mask = per_frame(mask)  # (B, t) -> (B, 1, t, 1, 1)
        try:
            weight = torch.broadcast_to(mask, err.shape)
        except RuntimeError as exc:
            raise ValueError(
                f"mask of shape {tuple(mask.shape)} does not broadcast to {tuple(err.shape)}"
            ) from exc
        if bool((weight < 0).any()):
            raise ValueError("mask weights must be non-negative")
        return weight
