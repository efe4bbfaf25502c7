"""``WALTModule``: the frozen tokenizer, the denoising backbone and the diffusion, trained together.

The training step only orchestrates; all math lives in ``walt.diffusion`` and all sampling in
``walt.samplers``. One step may carry a video stream and an image stream (W.A.L.T's joint
image-video training); each stream's loss is logged on its own.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping
from typing import Any

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from common.ema import EMA
from common.hparams import keep_plain_hparams
from common.nonfinite import NonFiniteGuard, check_finite_state, drop_grads, grads_finite
from common.registry import register
from common.seeding import step_generator
from data.callbacks import count_skipped
from models.backbone import Backbone
from walt.core.backbone_inputs import (
    BackboneInputs,
    ConditionConfig,
    Conditions,
    build_conditions,
)
from walt.core.generation import generate_latents, known_latents
from walt.core.latents import make_codec
from walt.core.loading import load_walt_checkpoint
from walt.core.sampling import SamplingConfig
from walt.core.super_resolution import (
    SuperResolutionConfig,
    batch_lowres_latents,
    check_super_resolution,
    sampling_lowres,
    training_lowres,
)
from walt.diffusion import GaussianDiffusion
from walt.lightning.clipping import clip_gradients
from walt.lightning.sharding import grad_total_norm, is_sharded_state, shard_module
from walt.text_encoder import TextEncoder


def _default_optimizer(params) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0, fused=True)


@register("module")
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
        ema_decay: decay of the weight EMA used for validation and sampling (warmed up, see
            ``common.ema``); updated right after each optimizer step.
        conditioning: self-conditioning, frame-conditioning and dropout probabilities.
        image_loss_weight: weight of the image stream's loss in joint training.
        sampling: how ``generate`` samples by default: sampler and its options, steps, every
            ``guidance_*`` option and a super-resolution stage's ``noise_level``
            (``walt.core.sampling.SamplingConfig``; W.A.L.T: 50 DDIM steps).
        max_nonfinite_steps: consecutive steps with a non-finite loss or gradient tolerated (each
            skipped, counted in ``train/nonfinite_steps``) before training stops with an error.
        seed: base of the per-step random generator (noise, timesteps, dropout, masks). Each
            step reseeds it from (seed, step, rank) (``common.seeding``), so a resumed run draws
            exactly what an uninterrupted one would, with no generator state to checkpoint.
        super_resolution: makes this a super-resolution stage of the cascade (W.A.L.T Sec. 4.5):
            the backbone (built with ``lowres_channels=latent_channels``) is conditioned on the
            low-res latent of the clip, noise-augmented; see ``docs/super_resolution.md``.
            ``size`` is then the high-res pixel size.
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
        sampling: SamplingConfig | None = None,
        max_nonfinite_steps: int = 20,
        seed: int = 0,
        super_resolution: SuperResolutionConfig | None = None,
    ) -> None:
        super().__init__()
        # Under the CLI the saved hyperparameters are the config itself (class paths included),
        # so `WALTModule.load_from_checkpoint` rebuilds the backbone and diffusion from them
        # (through common.registry only).
        with warnings.catch_warnings():
            # A backbone built in Python is an nn.Module here; keep_plain_hparams drops it, so
            # Lightning's advice to ignore it would only repeat on every load.
            warnings.filterwarnings("ignore", message="Attribute .* is an instance of `nn.Module`")
            self.save_hyperparameters()
        keep_plain_hparams(self.hparams)
        self.backbone = backbone
        self.inputs = BackboneInputs.of(backbone)  # what the backbone takes, read once
        self.diffusion = diffusion
        self.codec = make_codec(tokenizer, latent_channels=latent_channels)
        _check_backbone_channels(backbone, latent_channels)
        self.text_encoder = (
            TextEncoder(text_encoder, max_length=text_max_length) if text_encoder else None
        )
        self.ema = EMA(backbone, decay=ema_decay)
        self.optimizer_factory, self.scheduler_factory = optimizer, lr_scheduler
        self.cond_cfg = conditioning or ConditionConfig()
        self.super_resolution = super_resolution
        check_super_resolution(self.inputs, super_resolution, latent_channels=latent_channels)
        self.num_frames, self.size = num_frames, (size, size) if isinstance(size, int) else tuple(size)
        self.codec.check_frames(num_frames, self.size)
        self.image_loss_weight, self.seed = image_loss_weight, seed
        self.sampling = self.checked_sampling(sampling or SamplingConfig())
        self.nonfinite = NonFiniteGuard(max_steps=max_nonfinite_steps)
        self._loss_finite, self._step_ok = True, False
        self._step_t0: float | None = None

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path, map_location=None, **overrides):  # type: ignore[override]
        """Rebuild from a checkpoint; classes come only from ``common.registry`` (never imported
        by path from the file), see :func:`walt.core.loading.load_walt_checkpoint`."""
        return load_walt_checkpoint(checkpoint_path, map_location=map_location, **overrides)

    # ------------------------------------------------------------------ training
    def training_step(self, batch: Mapping[str, Mapping[str, Any]], batch_idx: int) -> Tensor:
        total, n_samples, n_tokens = 0.0, 0, 0
        gen = self._step_generator()
        for name, stream in batch.items():
            stream = self._with_text(stream)
            z0 = self.codec.latents(stream)  # (B, c, t, h, w), normalized
            stream = self._with_lowres(stream, z0, training=True, generator=gen)
            conds = self._conditions(stream, z0, training=True, generator=gen)
            timesteps = self.diffusion.sample_timesteps(z0.shape[0], generator=gen).to(z0.device)
            loss = self._diffusion_loss(
                self.backbone, z0, conds, gen, timesteps=timesteps,
                p_self_cond=self.cond_cfg.p_self_cond,
            )
            weight = self.image_loss_weight if name == "image" else 1.0
            total = total + weight * loss
            self.log(f"train/loss_{name}", loss, prog_bar=True, batch_size=z0.shape[0])
            n_samples += z0.shape[0]
            n_tokens += z0.shape[0] * z0.shape[2] * z0.shape[3] * z0.shape[4]
        # Summed over the streams: a joint step logs one count for its video and image streams.
        self.log("train/skipped_samples", float(count_skipped(batch)), reduce_fx="sum")
        self._log_throughput(n_samples, n_tokens)
        return self._guard_nonfinite(total)

    def _step_generator(self) -> torch.Generator:
        """CPU generator for this step and rank; reseeded every step (see ``seed``)."""
        return step_generator(self.seed, step=self.global_step, rank=self.global_rank)

    def _conditions(
        self, stream: Mapping[str, Any], z0: Tensor, *, training: bool, generator: torch.Generator
    ) -> Conditions:
        return build_conditions(
            stream,
            self.cond_cfg,
            z0=z0,
            training=training,
            inputs=self.inputs,
            generator=generator,
        )

    @property
    def is_super_resolution(self) -> bool:
        """Whether this module is a super-resolution stage (takes ``lowres_latents``)."""
        return self.super_resolution is not None

    def checked_sampling(self, sampling: SamplingConfig) -> SamplingConfig:
        """``sampling``, once its sampler has been built on this module's diffusion, so that a
        bad option value fails when it is given, naming it, not after training."""
        sampling.make_sampler(self.diffusion)
        return sampling

    def _with_lowres(
        self, stream: Mapping[str, Any], z0: Tensor, *, training: bool,
        generator: torch.Generator,
    ) -> Mapping[str, Any]:
        if self.super_resolution is None:
            return stream
        return training_lowres(
            stream, z0, sr=self.super_resolution, codec=self.codec, diffusion=self.diffusion,
            noise_level=None if training else self.sampling.noise_level, generator=generator,
        )

    def _with_text(self, stream: Mapping[str, Any]) -> Mapping[str, Any]:
        """Embed captions on the fly when the shards carry no precomputed text embeddings."""
        if (
            self.text_encoder is None
            or stream.get("text_emb") is not None
            or not self.inputs.text
        ):
            return stream
        emb, mask = self.text_encoder(stream["caption"])
        return {**stream, "text_emb": emb, "text_mask": mask}

    def _diffusion_loss(
        self,
        net: nn.Module,
        z0: Tensor,
        conds: Conditions,
        gen: torch.Generator,
        *,
        timesteps: Tensor,
        p_self_cond: float,
    ) -> Tensor:
        """The denoising loss of ``net`` at ``timesteps`` (B,), for training and evaluation,
        with W.A.L.T's self-conditioning (Chen et al., Analog Bits) used with probability
        ``p_self_cond`` (one coin per batch, as in Analog Bits)."""
        noise = torch.randn(z0.shape, generator=gen).to(z0)
        z_t = self.diffusion.q_sample(z0, timesteps, noise)
        self_cond = None
        if self.inputs.self_cond and torch.rand((), generator=gen) < p_self_cond:
            # First pass without gradients estimates x0; the second pass sees it stop-gradded.
            with torch.no_grad():
                pred = net(z_t, timesteps.float(), **conds.model_kwargs())
                self_cond = self.diffusion.pred_to_x0(pred, z_t, timesteps).detach()
        pred = net(z_t, timesteps.float(), self_cond=self_cond, **conds.model_kwargs())
        return self.diffusion.loss(pred, z0, noise, timesteps, mask=conds.loss_mask)

    def _guard_nonfinite(self, loss: Tensor) -> Tensor:
        """A non-finite loss on any rank skips the step (see ``configure_gradient_clipping``)."""
        finite = bool(torch.isfinite(loss).all())
        self._loss_finite = self.trainer.strategy.reduce_boolean_decision(finite, all=True)
        if self._loss_finite:
            self.log("train/loss", loss, prog_bar=True)
            return loss
        # A zero loss that still touches every parameter keeps DDP's gradient all-reduce in step.
        return sum(p.sum() * 0.0 for p in self.backbone.parameters() if p.requires_grad)

    def configure_gradient_clipping(
        self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None
    ) -> None:
        """Clip, then check: called by Lightning after backward and AMP unscaling, right before
        the optimizer steps. A non-finite loss or gradient drops every gradient, so the
        optimizer leaves the weights and its state alone (and ``optimizer_step`` skips the EMA);
        the step is counted, and too many in a row stop training. Gradients are identical on
        every rank after DDP's all-reduce, so every rank takes the same decision."""
        clip_gradients(self, optimizer, gradient_clip_val, gradient_clip_algorithm)
        params = [p for group in optimizer.param_groups for p in group["params"]]
        # Under FSDP2 each rank checks its own shards; all ranks then take the same decision.
        finite = self.trainer.strategy.reduce_boolean_decision(
            self._loss_finite and grads_finite(params), all=True
        )
        what = "gradient" if self._loss_finite else "loss"
        if not self.nonfinite.record(finite, what=what):
            drop_grads(params)
        self._step_ok = finite
        self.log("train/nonfinite_steps", self.nonfinite.total.float())

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None) -> None:
        # forward, backward, unscaling, clipping and the finiteness check, then the update
        self._step_ok = False
        optimizer.step(closure=optimizer_closure)
        if self._step_ok:
            # Here, not in on_train_batch_end: ModelCheckpoint saves in its on_train_batch_end,
            # which Lightning runs before the module's, so the checkpoint holds this update.
            self.ema.update(self.backbone)

    def on_before_optimizer_step(self, optimizer) -> None:
        norm = grad_total_norm(list(self.backbone.parameters()))
        if norm is not None:
            self.log("train/grad_norm", norm)
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
            stream = self._with_lowres(stream, z0, training=False, generator=gen)
            conds = self._conditions(stream, z0, training=False, generator=gen)
            b = z0.shape[0]
            # Evenly spaced timesteps: the same every round, so numbers are comparable.
            last = self.diffusion.num_train_timesteps - 1
            timesteps = torch.linspace(0, last, b).round().long().to(z0.device)
            loss = self._diffusion_loss(
                self.ema.module, z0, conds, gen, timesteps=timesteps, p_self_cond=0.0
            )
            self.log(f"{split}/loss_{name}", loss, batch_size=b, sync_dist=True)

    def predict_step(self, batch: Mapping[str, Mapping[str, Any]], batch_idx: int) -> dict:
        """Generate one clip per sample, for its label, caption and fps (``train.py predict``);
        unlabelled samples (label -1) get the null label."""
        out: dict[str, Any] = {}
        for name, stream in batch.items():
            stream = self._with_text(stream)
            b = len(stream["key"])
            lowres = (
                batch_lowres_latents(self.codec, stream, mode=self.super_resolution.downsample)
                if self.super_resolution is not None else None
            )
            pixels = self.generate(
                stream=stream,
                lowres_latents=lowres,
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
        stream: Mapping[str, Any] | None = None,
        sampling: SamplingConfig | None = None,
        num_samples: int | None = None,
        num_frames: int | None = None,
        size: tuple[int, int] | None = None,
        cond_pixels: Tensor | None = None,
        cond_latents: Tensor | None = None,
        cond_mask: Tensor | None = None,
        lowres_latents: Tensor | None = None,
        generator: torch.Generator | None = None,
        use_ema: bool = True,
        progress: bool = False,
        decode: bool = True,
    ) -> Tensor:
        """Sample clips: pixels ``(B, C, T, H, W)`` in [-1, 1] (normalized latents if not
        ``decode``).

        Args:
            stream: the conditions, as a batch carries them: ``label`` (-1 = null label),
                ``text_emb`` / ``text_mask`` and ``fps`` (required by fps-conditioned models);
                :func:`walt.core.generation.sampling_stream` makes one.
            sampling: how to sample (default: the module's ``sampling``; change fields with
                ``module.sampling.override({...})``).
            num_samples: B when no label, text, frames or low-res latents fix it.
            num_frames, size: the clips' pixel frames and (H, W) (default: the training ones).
            cond_pixels, cond_latents, cond_mask: known frames, W.A.L.T's
                ``c_fp = concat(m*z, m)`` (image to video, prediction, extension,
                interpolation), see :func:`walt.core.generation.known_latents`: pixels
                (B, C, T', H, W) or latents (B, c, t, h, w), and the (B, t) known-frame mask.
            lowres_latents: a super-resolution stage's input (B, c, t, h/2, w/2), the
                normalized latents of the low-res clip (``codec.encode`` of its pixels, or a
                base stage's ``decode=False`` output), noised to ``sampling.noise_level`` with
                noise drawn from ``generator``; ``size`` is then the high-res size.
        """
        sampling = self.sampling if sampling is None else sampling
        num_frames, size = num_frames or self.num_frames, size or self.size
        stream = self._sampling_inputs(stream, lowres_latents, sampling=sampling,
                                       num_frames=num_frames, size=size, generator=generator)
        if lowres_latents is not None:
            num_samples = num_samples or lowres_latents.shape[0]
        if cond_pixels is not None:
            cond_latents, cond_mask = known_latents(
                self.codec, cond_pixels.to(self.device), num_frames=num_frames, size=size,
                cond_mask=cond_mask,
            )
        z = generate_latents(
            self.ema.module if use_ema else self.backbone,
            self.codec,
            stream=stream,
            cond_cfg=self.cond_cfg,
            inputs=self.inputs,
            num_samples=num_samples,
            num_frames=num_frames,
            size=size,
            cond_latents=cond_latents,
            cond_mask=cond_mask,
            sampler=sampling.make_sampler(self.diffusion),
            guidance=sampling.guidance(),
            generator=generator,
            progress=progress,
        )
        return self.codec.decode(z) if decode else z

    def _sampling_inputs(
        self, stream: Mapping[str, Any] | None, lowres_latents: Tensor | None, *,
        sampling: SamplingConfig, num_frames: int, size: tuple[int, int],
        generator: torch.Generator | None,
    ) -> Mapping[str, Any]:
        """The sampling stream, plus a super-resolution stage's noised low-res latent."""
        stream = {} if stream is None else stream
        if lowres_latents is None and not self.is_super_resolution:
            return stream
        return sampling_lowres(
            stream, lowres_latents, sr=self.super_resolution, noise_level=sampling.noise_level,
            codec=self.codec, diffusion=self.diffusion, num_frames=num_frames, size=size,
            generator=generator, device=self.device,
        )

    # ------------------------------------------------------------------ plumbing
    def configure_model(self) -> None:
        """Under ``FSDP2Strategy`` shard the backbone and the EMA by block (docs/scaling.md)."""
        shard_module(self, self.trainer.strategy)

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
        # checkpoints to what trains. A sharded checkpoint keeps them: its loader wants every key.
        sd = checkpoint["state_dict"]
        for key in [k for k in sd if k.startswith(_FROZEN) and not is_sharded_state(sd)]:
            del sd[key]
        check_finite_state(sd)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "state_dict" not in checkpoint:
            return  # a sharded checkpoint: FSDP2Strategy has loaded the weights itself
        sd = checkpoint["state_dict"]
        # The frozen parts are not saved (on_save_checkpoint): they keep their current values.
        for key, value in self.state_dict().items():
            if key.startswith(_FROZEN):
                sd.setdefault(key, value)


_FROZEN = ("codec.", "text_encoder.")


def _check_backbone_channels(backbone: Backbone, latent_channels: int) -> None:
    in_ch = backbone.in_channels  # declared by every backbone (models.Backbone)
    if in_ch != latent_channels:
        raise ValueError(
            f"the backbone takes {in_ch} latent channels but latent_channels={latent_channels}; "
            "they must match the tokenizer's latent channels"
        )
