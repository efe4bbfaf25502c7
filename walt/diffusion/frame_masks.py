"""Frame-prediction conditioning masks (W.A.L.T Sec. 4, "Frame prediction").

W.A.L.T conditions the denoiser on ``c_fp = concat(m * z, m)`` along channels, where ``m`` is a
binary mask over latent frames: 1 latent frame for image-to-video, 2 for video prediction; the
network then generates the frames where ``m = 0``. ``z`` is the clean latent of the known frames
(the paper writes ``m * z_t``; we pass the clean latent so the known frames carry their content,
which is what the conditioning is for). Classifier-free guidance over ``c_fp`` drops it by
passing an all-zero mask (:func:`null_frame_condition`).

Masks here are float ``(B, 1, t, 1, 1)`` tensors (1 = known frame); any mask that broadcasts to
``(B, 1, t, h, w)`` is accepted, so arbitrary patterns such as interpolation (first and last
frames known) work too.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def per_frame(mask: Tensor) -> Tensor:
    """A per-latent-frame ``(B, t)`` tensor as ``(B, 1, t, 1, 1)``, to broadcast over latents."""
    if mask.ndim != 2:
        raise ValueError(f"a per-frame mask must be (B, t), got {tuple(mask.shape)}")
    return mask[:, None, :, None, None]  # (B, t) -> (B, 1, t, 1, 1)


def _check_shape(shape: Sequence[int]) -> tuple[int, int, int, int, int]:
    if len(shape) != 5:
        raise ValueError(f"shape must be a 5-D latent shape (B, c, t, h, w), got {tuple(shape)}")
    b, c, t, h, w = (int(v) for v in shape)
    return b, c, t, h, w


def make_frame_mask(
    shape: Sequence[int],
    num_cond_frames: int | Tensor,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Mask of the first ``num_cond_frames`` latent frames (frame prediction / image-to-video).

    Args:
        shape: latent shape ``(B, c, t, h, w)``.
        num_cond_frames: an int for the whole batch, or a ``(B,)`` integer tensor per sample
            (0 = unconditional sample).
        device: device of the mask.
        dtype: dtype of the mask.

    Returns:
        ``(B, 1, t, 1, 1)`` mask, 1 on the known frames.
    """
    b, _, t, _, _ = _check_shape(shape)
    counts = torch.as_tensor(num_cond_frames, device=device).long()
    if counts.ndim == 0:
        counts = counts.expand(b)
    if counts.shape != (b,) or bool((counts < 0).any()) or bool((counts > t).any()):
        raise ValueError(
            f"num_cond_frames must be an int or (B,)={b} ints in [0, {t}], got {num_cond_frames}"
        )
    frames = torch.arange(t, device=counts.device)
    return per_frame((frames[None, :] < counts[:, None]).to(dtype))  # (B, 1, t, 1, 1)


def frame_mask_from_indices(
    shape: Sequence[int],
    indices: Sequence[int],
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Mask of the listed latent frames for every sample; negative indices count from the end.

    ``indices=(0, -1)`` gives frame interpolation (first and last frames known).

    Returns:
        ``(B, 1, t, 1, 1)`` mask.
    """
    b, _, t, _, _ = _check_shape(shape)
    mask = torch.zeros(b, 1, t, 1, 1, device=device, dtype=dtype)
    for index in indices:
        if not -t <= index < t:
            raise ValueError(f"frame index {index} is out of range for t={t} latent frames")
        mask[:, :, index] = 1.0
    return mask


def sample_frame_mask(
    shape: Sequence[int],
    *,
    p_frame_cond: float,
    frame_cond_choices: Sequence[int] = (1, 2),
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Random training masks: with probability ``p_frame_cond`` a sample conditions on its first ``k``
    latent frames, ``k`` uniform over ``frame_cond_choices`` (W.A.L.T: 1 for image-to-video, 2 for
    video prediction); otherwise its mask is all zero (unconditional generation).

    Choices larger than ``t - 1`` are clipped so that at least one frame is always generated;
    a 1-frame latent (an image) is never conditioned.

    Returns:
        ``(B, 1, t, 1, 1)`` mask.
    """
    b, _, t, _, _ = _check_shape(shape)
    gen_device = generator.device if generator is not None else device
    use, pick = _draw_choices(b, p_frame_cond, frame_cond_choices, generator, gen_device,
                              names=("p_frame_cond", "frame_cond_choices"))
    choices = torch.as_tensor(list(frame_cond_choices), device=gen_device).clamp(max=t - 1)
    counts = torch.where(use, choices[pick], torch.zeros_like(pick))
    return make_frame_mask(shape, counts.to(device), device=device, dtype=dtype)


def keyframe_indices(t: int, every: int) -> list[int]:
    """Latent frames ``0, k, 2k, ...`` and the last one: the keyframes of interpolation with
    spacing ``every`` (Make-A-Video's masked frame interpolation, in latent space)."""
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    return sorted({*range(0, t, every), t - 1})


def sample_interpolation_mask(
    shape: Sequence[int],
    *,
    p_interpolate: float,
    interpolate_every: Sequence[int] = (2, 3),
    generator: torch.Generator | None = None,
) -> Tensor:
    """Random interpolation masks: with probability ``p_interpolate`` a sample knows its keyframes
    (:func:`keyframe_indices`, spacing uniform over ``interpolate_every``), else nothing.

    Spacings that would leave no frame to generate (``t <= 2``, or ``k = 1``) give no condition.

    Returns:
        ``(B, 1, t, 1, 1)`` float mask on the generator's device.
    """
    b, _, t, _, _ = _check_shape(shape)
    gen_device = generator.device if generator is not None else None
    use, pick = _draw_choices(b, p_interpolate, interpolate_every, generator, gen_device,
                              names=("p_interpolate", "interpolate_every"))
    rows = []
    for i in range(b):
        keys = keyframe_indices(t, int(interpolate_every[int(pick[i])]))
        row = torch.zeros(t)
        if bool(use[i]) and len(keys) < t:
            row[keys] = 1.0
        rows.append(row)
    return per_frame(torch.stack(rows))  # (B, t) -> (B, 1, t, 1, 1)


def keep_known(z: Tensor, z_known: Tensor, mask: Tensor) -> Tensor:
    """``m * z_known + (1 - m) * z``: the known latent frames exactly, the sampled ones elsewhere.

    Args:
        z: ``(B, c, t, h, w)`` sampled latents.
        z_known: ``(B, c, t, h, w)`` latents whose known frames are kept.
        mask: ``(B, t)`` per-frame mask, 1 on known frames.
    """
    m = per_frame(mask.to(z))  # (B, t) -> (B, 1, t, 1, 1)
    return m * z_known.to(z) + (1 - m) * z


def frame_condition(z: Tensor, mask: Tensor) -> Tensor:
    """``c_fp = concat(m * z, m)`` on channels (W.A.L.T Sec. 4).

    Args:
        z: latent ``(B, c, t, h, w)`` whose known frames are kept.
        mask: ``(B, t)`` per-frame mask or any tensor broadcasting to ``(B, 1, t, h, w)``.

    Returns:
        ``(B, c + 1, t, h, w)`` conditioning tensor in ``z``'s dtype.
    """
    if z.ndim != 5:
        raise ValueError(f"z must be (B, c, t, h, w), got {tuple(z.shape)}")
    b, _, t, h, w = z.shape
    mask = mask.to(device=z.device, dtype=z.dtype)
    if mask.ndim == 2:
        mask = per_frame(mask)  # (B, t) -> (B, 1, t, 1, 1)
    try:
        mask = torch.broadcast_to(mask, (b, 1, t, h, w))
    except RuntimeError as exc:
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} does not broadcast to {(b, 1, t, h, w)}"
        ) from exc
    return torch.cat([z * mask, mask], dim=1)  # (B, c + 1, t, h, w)


def null_frame_condition(z: Tensor) -> Tensor:
    """The "unconditional" ``c_fp``: all-zero mask, so no frame is known (for CFG over c_fp)."""
    b, _, t, _, _ = z.shape
    return frame_condition(z, torch.zeros(b, t, device=z.device, dtype=z.dtype))


def generation_mask(frame_mask: Tensor) -> Tensor:
    """``1 - m``: the frames to be generated, to restrict the loss to them."""
    return 1.0 - frame_mask


def _draw_choices(
    b: int, p: float, choices: Sequence[int], generator: torch.Generator | None, device,
    *, names: tuple[str, str],
) -> tuple[Tensor, Tensor]:
    """Per sample: whether it is conditioned (probability ``p``) and which of ``choices`` it
    takes (uniform), both ``(B,)``; the argument names go into the errors."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{names[0]} must be in [0, 1], got {p}")
    if len(choices) == 0 or min(choices) < 1:
        raise ValueError(f"{names[1]} must be positive ints, got {tuple(choices)}")
    use = torch.rand(b, generator=generator, device=device) < p
    pick = torch.randint(len(choices), (b,), generator=generator, device=device)
    return use, pick
