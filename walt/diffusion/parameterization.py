"""What the network predicts (v, eps or x0) and the conversions between them, written once.

Notation (Salimans & Ho 2022, "Progressive Distillation", Sec. 4 and App. D): ``alpha_t =
sqrt(abar_t)``, ``sigma_t = sqrt(1 - abar_t)``, ``x_t = alpha_t x_0 + sigma_t eps`` and the
velocity ``v = alpha_t eps - sigma_t x_0``. W.A.L.T trains with v-prediction.

The training objective (:class:`~walt.diffusion.GaussianDiffusion`) passes ``alpha, sigma`` as
tensors shaped to broadcast against the data; the samplers pass Python floats.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor

Prediction = Literal["v", "eps", "x0"]
PREDICTIONS: tuple[str, ...] = ("v", "eps", "x0")
Coef = float | Tensor


def check_prediction(prediction: str, abar: Tensor) -> None:
    """Reject unknown prediction types and eps-prediction on a zero-terminal-SNR schedule.

    At zero terminal SNR ``alpha_T = 0`` and ``x_T = eps``, so an eps-prediction carries no
    information about ``x_0`` and ``x_0 = (x_T - sigma_T eps) / alpha_T`` is 0/0 (Lin et al. 2023,
    Sec. 3.2, which switches to v-prediction for this reason).
    """
    if prediction not in PREDICTIONS:
        raise ValueError(f"unknown prediction {prediction!r}; expected one of {PREDICTIONS}")
    if prediction == "eps" and float(abar[-1]) == 0.0:
        raise ValueError(
            "prediction='eps' cannot recover x0 at zero terminal SNR (alpha_T = 0); "
            "use prediction='v' or 'x0', or rescale_zero_snr=False"
        )


def velocity(x0: Tensor, eps: Tensor, alpha: Coef, sigma: Coef) -> Tensor:
    """``v = alpha eps - sigma x_0`` (Salimans & Ho 2022, eq. in Sec. 4)."""
    return alpha * eps - sigma * x0


def target(prediction: Prediction, x0: Tensor, eps: Tensor, alpha: Coef, sigma: Coef) -> Tensor:
    """The regression target of ``prediction`` for clean data ``x0`` noised with ``eps``."""
    if prediction == "v":
        return velocity(x0, eps, alpha, sigma)
    return eps if prediction == "eps" else x0


def to_x0_eps(
    prediction: Prediction, output: Tensor, x_t: Tensor, alpha: Coef, sigma: Coef
) -> tuple[Tensor, Tensor]:
    """``(x0, eps)`` estimates from a network ``output`` at ``x_t``.

    v: ``x_0 = alpha x_t - sigma v``, ``eps = sigma x_t + alpha v``; eps: ``x_0 = (x_t - sigma
    eps) / alpha`` (undefined at ``alpha = 0``, which :func:`check_prediction` rules out); x0:
    ``eps = (x_t - alpha x_0) / sigma``.
    """
    if prediction == "v":
        return alpha * x_t - sigma * output, sigma * x_t + alpha * output
    if prediction == "eps":
        return (x_t - sigma * output) / alpha, output
    return output, (x_t - alpha * output) / sigma


def to_x0(prediction: Prediction, output: Tensor, x_t: Tensor, alpha: Coef, sigma: Coef) -> Tensor:
    """Data estimate from a network output (see :func:`to_x0_eps`)."""
    return output if prediction == "x0" else to_x0_eps(prediction, output, x_t, alpha, sigma)[0]


def to_eps(prediction: Prediction, output: Tensor, x_t: Tensor, alpha: Coef, sigma: Coef) -> Tensor:
    """Noise estimate from a network output (see :func:`to_x0_eps`)."""
    return output if prediction == "eps" else to_x0_eps(prediction, output, x_t, alpha, sigma)[1]


def to_v(prediction: Prediction, output: Tensor, x_t: Tensor, alpha: Coef, sigma: Coef) -> Tensor:
    """Velocity estimate from a network output: ``v = alpha eps - sigma x_0``."""
    if prediction == "v":
        return output
    x0, eps = to_x0_eps(prediction, output, x_t, alpha, sigma)
    return velocity(x0, eps, alpha, sigma)
