"""``WALTModule``: the frozen tokenizer, the denoising backbone and the diffusion, trained together.

The training step only orchestrates; all math lives in ``walt.diffusion`` and all sampling in
``walt.samplers``. One step may carry a video stream and an image stream (W.A.L.T's joint
image-video training); each stream's loss is logged on its own.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, is_dataclass
from typing import Any

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import grad_norm
from torch import Tensor, nn

from walt.diffusion import GaussianDiffusion
from walt.lightning.conditioning import (
    BackboneInputs,
    ConditionConfig,
    Conditions,
    build_conditions,
)
from walt.lightning.ema import make_ema
from walt.lightning.generation import generate_latents
from walt.lightning.latents import make_codec
from walt.samplers import SamplerName
from walt.text_encoder import TextEncoder


def _default_optimizer(params) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0)


class WALTModule(LightningModule):
    """Latent video diffusion in the style of W.A.L.T (Gupta et al. 2023).

    Args:
        backbone: the denoiser, e.g. ``models.WindowedDiT``; its ``in_channels`` must equal
            ``latent_channels`` (train.py links them).
        diffusion: the noise schedule and objective (``walt.diffusion.GaussianDiffusion``).
        tokenizer: path to the tokenizer's safetensors export or Lightning checkpoint; its
            saved config carries the latent statistics used to normalize latents. ``None`` or
            ``"pixels"``: pixel-space diffusion through an identity codec (``c = 3``).
        latent_channels: c, checked against the tokenizer and the backbone.
        text_encoder: local folder of a frozen T5-style encoder, to embed captions on the fly
            when the shards carry no precomputed ``text_emb``.
        text_max_length: caption tokens L kept by the text encoder.
        num_frames: pixel frames T of a training clip (1 + 4k); sets the sampling shape.
        size: pixel (H, W) of a training clip; sets the sampling shape.
        optimizer: optimizer factory (AdamW by default, as in the paper's benchmarks).
        lr_scheduler: scheduler factory, stepped every optimizer step (e.g. WarmupCosineLR).
        ema_decay: decay of the weight EMA used for validation and sampling.
        conditioning: self-conditioning, frame-conditioning and dropout probabilities.
        image_loss_weight: weight of the image stream's loss in joint training.
        sampler: default sampler for ``generate``.
        num_sample_steps: default number of sampling steps (50 DDIM steps in the paper).
        guidance_scale: default classifier-free guidance scale (1 = no guidance).
        max_nonfinite_steps: consecutive non-finite losses tolerated (each skipped and logged)
            before training stops with an error.
        seed: base of the per-step random generator (noise, timesteps, dropout, masks). Each
            step reseeds it from (seed, step, rank), so a resumed run draws exactly what an
            uninterrupted one would, with no generator state to checkpoint.
    """

    def __init__(
        self,
        *,
        backbone: nn.Module,
        diffusion: GaussianDiffusion,
        tokenizer: str | None,
        latent_channels: int = 8,
        text_encoder: str | None = None,
        text_max_length: int = 77,
        num_frames: int = 17,
        size: int | tuple[int, int] = 128,
        optimizer: OptimizerCallable = _default_optimizer,
        lr_scheduler: LRSchedulerCallable | None = None,
        ema_decay: float = 0.9999,
        conditioning: ConditionConfig | None = None,
        image_loss_weight: float = 1.0,
        sampler: SamplerName = "ddim",
        num_sample_steps: int = 50,
        guidance_scale: float = 1.0,
        max_nonfinite_steps: int = 20,
        seed: int = 0,
    ) -> None:
        super().__init__()
        # Under the CLI the saved hyperparameters are the config itself (class paths included),
        # so `WALTModule.load_from_checkpoint` rebuilds the backbone and diffusion from them.
        self.save_hyperparameters()
        _keep_plain_hparams(self.hparams)
        _record_backbone_channels(self.hparams, latent_channels)
        self.backbone = backbone
        self.diffusion = diffusion
        self.codec = make_codec(tokenizer, latent_channels=latent_channels)
        _check_backbone_channels(backbone, latent_channels)
        self.text_encoder = (
            TextEncoder(text_encoder, max_length=text_max_length) if text_encoder else None
        )
        self.ema = make_ema(backbone, decay=ema_decay)
        self.optimizer_factory, self.scheduler_factory = optimizer, lr_scheduler
        self.cond_cfg = conditioning or ConditionConfig()
        self.num_frames, self.size = num_frames, (size, size) if isinstance(size, int) else tuple(size)
        self.codec.check_frames(num_frames, self.size)
        self.image_loss_weight = image_loss_weight
        self.sampler_name, self.num_sample_steps = sampler, num_sample_steps
        self.guidance_scale, self.max_nonfinite_steps = guidance_scale, max_nonfinite_steps
        self.seed = seed
        self._nonfinite_run = 0
        self._skip_update = False
        self._step_t0: float | None = None

    # ------------------------------------------------------------------ training
    def training_step(self, batch: Mapping[str, Mapping[str, Any]], batch_idx: int) -> Tensor:
        total, n_samples, n_tokens = 0.0, 0, 0
        gen = self._step_generator()
        for name, stream in batch.items():
            stream = self._with_text(stream)
            z0 = self.codec.latents(stream)  # (B, c, t, h, w), normalized
            conds = self._conditions(stream, z0, training=True, generator=gen)
            loss = self._diffusion_loss(z0, conds, gen)
            weight = self.image_loss_weight if name == "image" else 1.0
            total = total + weight * loss
            self.log(f"train/loss_{name}", loss, prog_bar=True, batch_size=z0.shape[0])
            n_samples += z0.shape[0]
            n_tokens += z0.shape[0] * z0.shape[2] * z0.shape[3] * z0.shape[4]
            if "skipped" in stream:
                self.log("train/skipped_samples", stream["skipped"].float().sum(), reduce_fx="sum")
        self._log_throughput(n_samples, n_tokens)
        return self._guard_nonfinite(total)

    def _step_generator(self) -> torch.Generator:
        """CPU generator for this step and rank; reseeded every step (see ``seed``)."""
        step, rank = self.global_step, self.global_rank
        return torch.Generator().manual_seed(self.seed + 1_000_003 * step + 7919 * rank)

    def _conditions(
        self, stream: Mapping[str, Any], z0: Tensor, *, training: bool, generator: torch.Generator
    ) -> Conditions:
        return build_conditions(
            stream,
            self.cond_cfg,
            z0=z0,
            training=training,
            inputs=BackboneInputs.of(self.backbone),
            generator=generator,
        )

    def _with_text(self, stream: Mapping[str, Any]) -> Mapping[str, Any]:
        """Embed captions on the fly when the shards carry no precomputed text embeddings."""
        if (
            self.text_encoder is None
            or stream.get("text_emb") is not None
            or not BackboneInputs.of(self.backbone).text
        ):
            return stream
        emb, mask = self.text_encoder(stream["caption"])
        return {**stream, "text_emb": emb, "text_mask": mask}

    def _diffusion_loss(self, z0: Tensor, conds: Conditions, gen: torch.Generator) -> Tensor:
        """One denoising loss, with W.A.L.T's self-conditioning (Chen et al., Analog Bits)."""
        b = z0.shape[0]
        t = self.diffusion.sample_timesteps(b, generator=gen).to(z0.device)
        noise = torch.randn(z0.shape, generator=gen).to(z0)
        z_t = self.diffusion.q_sample(z0, t, noise)
        self_cond = None
        use_sc = getattr(self.backbone, "use_self_cond", False)
        # One coin per batch (as in Analog Bits): the extra pass is skipped when it comes up tails.
        if use_sc and torch.rand((), generator=gen) < self.cond_cfg.p_self_cond:
            # First pass without gradients estimates x0; the second pass sees it stop-gradded.
            with torch.no_grad():
                pred = self.backbone(z_t, t.float(), **conds.model_kwargs())
                self_cond = self.diffusion.pred_to_x0(pred, z_t, t).detach()
        pred = self.backbone(z_t, t.float(), self_cond=self_cond, **conds.model_kwargs())
        return self.diffusion.loss(pred, z0, noise, t, mask=conds.loss_mask)

    def _guard_nonfinite(self, loss: Tensor) -> Tensor:
        """Skip (and count) steps whose loss is not finite on any rank; stop after too many."""
        finite = bool(torch.isfinite(loss).all())
        finite = self.trainer.strategy.reduce_boolean_decision(finite, all=True)
        self._skip_update = not finite
        if finite:
            self._nonfinite_run = 0
            self.log("train/loss", loss, prog_bar=True)
            return loss
        self._nonfinite_run += 1
        self.log("train/nonfinite_steps", float(self._nonfinite_run))
        if self._nonfinite_run > self.max_nonfinite_steps:
            raise FloatingPointError(
                f"the loss was non-finite for {self._nonfinite_run} consecutive steps "
                f"(limit max_nonfinite_steps={self.max_nonfinite_steps}); lower the learning "
                "rate, check the data, or check the tokenizer's latent statistics"
            )
        # A zero loss that still touches every parameter keeps DDP's gradient all-reduce in step.
        return sum(p.sum() * 0.0 for p in self.backbone.parameters() if p.requires_grad)

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None) -> None:
        optimizer_closure()  # forward + backward (+ clipping via the precision plugin)
        if self._skip_update:
            return
        optimizer.step()

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        if not self._skip_update:
            self.ema.update_parameters(self.backbone)

    def on_before_optimizer_step(self, optimizer) -> None:
        norms = grad_norm(self.backbone, norm_type=2)
        if norms:
            self.log("train/grad_norm", norms["grad_2.0_norm_total"])
        self.log("train/lr", optimizer.param_groups[0]["lr"])

    def _log_throughput(self, n_samples: int, n_tokens: int) -> None:
        now = time.perf_counter()
        if self._step_t0 is not None:
            dt = max(now - self._step_t0, 1e-9)
            self.log("train/samples_per_s", n_samples / dt)
            self.log("train/tokens_per_s", n_tokens / dt)
        self._step_t0 = now

    # ---------------------------------------------------------------- validation
    def validation_step(self, batch: Mapping[str, Mapping[str, Any]], batch_idx: int) -> None:
        """EMA loss at fixed timesteps and noise, so validation numbers are comparable."""
        self._eval_loss(batch, batch_idx, "val")

    def test_step(self, batch: Mapping[str, Mapping[str, Any]], batch_idx: int) -> None:
        self._eval_loss(batch, batch_idx, "test")

    def _eval_loss(self, batch: Mapping[str, Mapping[str, Any]], batch_idx: int, split: str) -> None:
        gen = torch.Generator().manual_seed(self.seed + batch_idx)
        for name, stream in batch.items():
            stream = self._with_text(stream)
            z0 = self.codec.latents(stream)
            conds = self._conditions(stream, z0, training=False, generator=gen)
            b = z0.shape[0]
            t = torch.linspace(0, self.diffusion.num_train_steps - 1, b).round().long().to(z0.device)
            noise = torch.randn(z0.shape, generator=gen).to(z0)
            z_t = self.diffusion.q_sample(z0, t, noise)
            pred = self.ema.module(z_t, t.float(), **conds.model_kwargs())
            loss = self.diffusion.loss(pred, z0, noise, t, mask=conds.loss_mask)
            self.log(f"{split}/loss_{name}", loss, batch_size=b, sync_dist=True)

    def predict_step(self, batch: Mapping[str, Mapping[str, Any]], batch_idx: int) -> dict:
        """Generate one clip per sample, for its label and caption (``train.py predict``)."""
        out: dict[str, Any] = {}
        for name, stream in batch.items():
            stream = self._with_text(stream)
            inputs = BackboneInputs.of(self.backbone)
            b = len(stream["key"])
            pixels = self.generate(
                labels=stream["label"].clamp_min(0) if inputs.labels else None,
                text_emb=stream.get("text_emb") if inputs.text else None,
                text_mask=stream.get("text_mask") if inputs.text else None,
                num_samples=b,
                num_frames=1 if name == "image" else self.num_frames,
                generator=torch.Generator(device=self.device).manual_seed(self.seed + batch_idx),
            )
            out[name] = {"pixels": pixels.cpu(), "key": stream["key"]}
        return out

    # ---------------------------------------------------------------- generation
    @torch.no_grad()
    def generate(
        self,
        *,
        labels: Tensor | None = None,
        text_emb: Tensor | None = None,
        text_mask: Tensor | None = None,
        num_samples: int | None = None,
        num_frames: int | None = None,
        size: tuple[int, int] | None = None,
        cond_pixels: Tensor | None = None,
        cond_mask: Tensor | None = None,
        sampler: str | None = None,
        num_steps: int | None = None,
        guidance_scale: float | None = None,
        generator: torch.Generator | None = None,
        use_ema: bool = True,
        progress: bool = False,
    ) -> Tensor:
        """Sample clips and decode them to pixels ``(B, C, T, H, W)`` in [-1, 1].

        ``cond_pixels`` with a per-latent-frame ``cond_mask`` (B, t) conditions on known frames
        (image to video, extension, interpolation) through W.A.L.T's c_fp = concat(m*z, m).
        """
        net = self.ema.module if use_ema else self.backbone
        z = generate_latents(
            net,
            self.diffusion,
            self.codec,
            labels=labels,
            text_emb=text_emb,
            text_mask=text_mask,
            num_samples=num_samples,
            num_frames=num_frames or self.num_frames,
            size=size or self.size,
            cond_pixels=cond_pixels,
            cond_mask=cond_mask,
            sampler=sampler or self.sampler_name,
            num_steps=num_steps or self.num_sample_steps,
            guidance_scale=self.guidance_scale if guidance_scale is None else guidance_scale,
            generator=generator,
            progress=progress,
        )
        return self.codec.decode(z)

    # ------------------------------------------------------------------ plumbing
    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.backbone.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_train_epoch_start(self) -> None:
        # The frozen tokenizer and text encoder stay in eval mode while the backbone trains.
        self.codec.eval()
        if self.text_encoder is not None:
            self.text_encoder.eval()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The frozen tokenizer and text encoder are reloaded from their own files; keep
        # checkpoints to what trains.
        sd = checkpoint["state_dict"]
        for key in [k for k in sd if k.startswith(_FROZEN)]:
            del sd[key]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        sd = checkpoint["state_dict"]
        for key, value in self.state_dict().items():
            if key.startswith(_FROZEN):
                sd.setdefault(key, value)


_FROZEN = ("codec.", "text_encoder.")


def _keep_plain_hparams(hparams: dict[str, Any]) -> None:
    """Keep only plain data, so checkpoints load with ``weights_only=True``.

    Objects passed directly from Python (a built backbone, a diffusion) are dropped; under the
    CLI the same entries are plain ``class_path`` / ``init_args`` dicts and are kept.
    """
    for key, value in list(hparams.items()):
        if is_dataclass(value) and not isinstance(value, type):
            hparams[key] = asdict(value)
        elif not _is_plain(value):
            del hparams[key]


def _record_backbone_channels(hparams: dict[str, Any], latent_channels: int) -> None:
    """Write the linked ``in_channels`` into the saved backbone config: train.py links it from
    ``latent_channels`` and a link target is left out of the config, so a reloaded backbone
    would otherwise take its default (8), wrong for pixel space (3)."""
    init_args = (hparams.get("backbone") or {}).get("init_args")
    if isinstance(init_args, dict):
        init_args.setdefault("in_channels", latent_channels)


def _is_plain(value: Any) -> bool:
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v) for v in value)
    return value is None or isinstance(value, (str, int, float, bool))


def _check_backbone_channels(backbone: nn.Module, latent_channels: int) -> None:
    in_ch = getattr(backbone, "in_channels", None)
    if in_ch is not None and in_ch != latent_channels:
        raise ValueError(
            f"the backbone takes {in_ch} latent channels but latent_channels={latent_channels}; "
            "they must match the tokenizer's latent channels"
        )
