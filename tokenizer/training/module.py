"""LightningModule training the causal VAE with the MAGVIT-v2 loss recipe.

Manual optimisation with two optimisers (VAE, discriminator; Adam by default), an EMA of the VAE
used for validation and export, a NaN/inf guard, and joint image + video batches (a dict of
streams, see docs/CONVENTIONS.md). ``trainer.global_step`` counts VAE (generator) steps only: the
discriminator's optimiser is stepped directly so it does not advance the step counter. The EMA,
the learning-rate schedule, the guard, the per-step seeding and the media logging are the ones
``walt.lightning.WALTModule`` uses (``common``).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from common.atomic import atomic_path
from common.ema import EMA
from common.hparams import keep_plain_hparams
from common.media_log import log_media
from common.nonfinite import NonFiniteGuard, check_finite_state, drop_grads, grads_finite
from common.registry import register
from common.run_paths import module_output_path
from common.seeding import step_generator
from data.encode import write_mp4
from tokenizer.loading import CONFIG_KEY, save_tokenizer
from tokenizer.metrics import psnr, ssim
from tokenizer.network.vae import CausalVAE
from tokenizer.training.discriminator import Discriminator3d
from tokenizer.training.losses import (
    LeCAM,
    adaptive_weight,
    generator_adv_loss,
    hinge_d_loss,
    reconstruction_loss,
)
from tokenizer.training.media import side_by_side
from tokenizer.training.perceptual import PerceptualLoss


def batch_streams(batch: dict) -> dict[str, torch.Tensor]:
    """``{"video": {"pixels": ...}, "image": {...}}`` (or one stream dict) -> name -> pixels."""
    if "pixels" in batch:
        return {"video" if batch["pixels"].shape[2] > 1 else "image": batch["pixels"]}
    streams = {k: v["pixels"] for k, v in batch.items() if isinstance(v, dict) and "pixels" in v}
    if not streams:
        raise ValueError(f"batch has no stream with 'pixels'; keys: {sorted(batch)}")
    return streams


def _default_optimizer(params) -> torch.optim.Optimizer:
    """MAGVIT-v2's optimiser: Adam, lr 1e-4, betas (0, 0.99)."""
    return torch.optim.Adam(params, lr=1e-4, betas=(0.0, 0.99), fused=True)


@register("module")
class TokenizerModule(L.LightningModule):
    """Train ``CausalVAE`` (reconstruction + KL + perceptual + GAN with LeCAM).

    Args:
        preset: ``CausalVAE`` preset name (``tiny``, ``walt``, ``walt-image``).
        vae_overrides: constructor overrides for the preset.
        optimizer: optimiser factory, called once for the VAE and once for the discriminator
            (default: MAGVIT-v2's Adam, lr 1e-4, betas (0, 0.99)).
        lr_scheduler: scheduler factory for the VAE's optimiser, stepped every VAE step (e.g.
            ``common.lr.WarmupCosineLR``); None keeps the rate constant.
        ema_decay: EMA decay of the VAE weights (0.999), warmed up over the first steps.
        recon_loss: ``"l1"`` or ``"l2"``.
        recon_weight: reconstruction weight (5.0).
        kl_weight: KL weight on the Gaussian posterior.
        perceptual_weight: perceptual weight (0.1 in MAGVIT-v2; 0 disables).
        perceptual_backbone: timm model name for the perceptual loss.
        perceptual_weights: local weights file for that backbone (required if weight > 0).
        perceptual_frames: frames per clip used for the perceptual loss.
        adv_weight: generator adversarial weight (0.1), times the adaptive weight.
        lecam_weight: LeCAM weight (0.001).
        disc_start: generator step at which the GAN switches on (< 0 never).
        disc_base_channels: discriminator width unit.
        disc_channel_mults: discriminator down-block multipliers (2,4,4,4,4).
        grad_clip: max gradient norm (0 disables clipping).
        max_nonfinite_steps: consecutive steps with a non-finite loss or gradient tolerated (each
            skipped, counted in ``train/nonfinite_steps``) before training stops with an error.
        stream_weights: loss weight per batch stream (default 1 each).
        media_every: write input|reconstruction mp4s every N steps (0 disables).
        media_dir: where to write them (default ``<log_dir>/media``); a relative path is under
            ``trainer.default_root_dir``.
        seed: base seed of the posterior sampling (seeded per step, so resumes are exact).
        export_path: if set, the EMA VAE is exported to this ``.safetensors`` at the end of fit;
            a relative path is under ``trainer.default_root_dir``.
    """

    def __init__(
        self,
        *,
        preset: str = "tiny",
        vae_overrides: dict[str, Any] | None = None,
        optimizer: OptimizerCallable = _default_optimizer,
        lr_scheduler: LRSchedulerCallable | None = None,
        ema_decay: float = 0.999,
        recon_loss: str = "l1",
        recon_weight: float = 5.0,
        kl_weight: float = 1e-6,
        perceptual_weight: float = 0.0,
        perceptual_backbone: str = "resnet18",
        perceptual_weights: str | None = None,
        perceptual_frames: int = 4,
        adv_weight: float = 0.1,
        lecam_weight: float = 0.001,
        disc_start: int = -1,
        disc_base_channels: int = 64,
        disc_channel_mults: tuple[int, ...] = (2, 4, 4, 4, 4),
        grad_clip: float = 1.0,
        max_nonfinite_steps: int = 20,
        stream_weights: dict[str, float] | None = None,
        media_every: int = 0,
        media_dir: str | None = None,
        seed: int = 0,
        export_path: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        keep_plain_hparams(self.hparams)  # drop factories passed from Python (weights_only loads)
        self.automatic_optimization = False
        self.optimizer_factory, self.scheduler_factory = optimizer, lr_scheduler
        self.vae = CausalVAE.from_preset(preset, **(vae_overrides or {}))
        self.ema = EMA(self.vae, decay=ema_decay)
        self.disc = Discriminator3d(
            base_channels=disc_base_channels, channel_mults=disc_channel_mults
        )
        self.lecam = LeCAM(decay=0.999)
        self.perceptual = None
        if perceptual_weight > 0:
            if perceptual_weights is None:
                raise ValueError("perceptual_weight > 0 needs perceptual_weights (a local file)")
            self.perceptual = PerceptualLoss(
                backbone=perceptual_backbone,
                weights_path=perceptual_weights,
                max_frames=perceptual_frames,
            )
        self.nonfinite = NonFiniteGuard(max_steps=max_nonfinite_steps)

    # ---- optimisation set-up --------------------------------------------------------------
    def configure_optimizers(self):
        opt_g = self.optimizer_factory(self.vae.parameters())
        opt_d = self.optimizer_factory(self.disc.parameters())
        if self.scheduler_factory is None:
            return [opt_g, opt_d]
        return [opt_g, opt_d], [self.scheduler_factory(opt_g)]

    # ---- losses ---------------------------------------------------------------------------
    def _generator_loss(self, x: torch.Tensor, gen: torch.Generator, use_disc: bool, name: str):
        hp = self.hparams
        recon, post = self.vae(x, sample=True, generator=gen)
        rec = reconstruction_loss(recon, x, hp.recon_loss)
        nll = hp.recon_weight * rec
        logs = {f"{name}/rec": rec.detach()}
        if self.perceptual is not None:
            perc = self.perceptual(recon, x)
            nll = nll + hp.perceptual_weight * perc
            logs[f"{name}/perceptual"] = perc.detach()
        kl = post.kl().mean()
        loss = nll + hp.kl_weight * kl
        logs[f"{name}/kl"] = kl.detach()
        if use_disc:
            g_adv = generator_adv_loss(self.disc(recon))
            w = adaptive_weight(nll, g_adv, self.vae.decoder.conv_out.conv.weight)
            loss = loss + hp.adv_weight * w * g_adv
            logs[f"{name}/g_adv"], logs[f"{name}/adaptive_weight"] = g_adv.detach(), w
        with torch.no_grad():
            logs[f"{name}/psnr"] = psnr(recon, x).mean()
            logs[f"{name}/ssim"] = ssim(recon, x).mean()
        return loss, recon.detach(), logs

    def _disc_loss(self, x: torch.Tensor, recon: torch.Tensor, name: str):
        real, fake = self.disc(x), self.disc(recon)
        loss = hinge_d_loss(real, fake) + self.hparams.lecam_weight * self.lecam(real, fake)
        self.lecam.update(real, fake)
        logs = {
            f"{name}/d_loss": loss.detach(),
            f"{name}/logits_real": real.detach().mean(),
            f"{name}/logits_fake": fake.detach().mean(),
        }
        return loss, logs

    def _finite_backward_step(
        self, loss: torch.Tensor, opt, params: list, lightning_step: bool
    ) -> str | None:
        """Backward, clip, check, step; returns what was non-finite (the step then skipped)."""
        if not torch.isfinite(loss):
            return "loss"
        opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        clip = self.hparams.grad_clip if self.hparams.grad_clip > 0 else float("inf")
        torch.nn.utils.clip_grad_norm_(params, clip)
        # Checked after clipping: one NaN gradient makes the norm NaN and clipping spreads it.
        if not grads_finite(params):
            drop_grads(params)
            return "gradient"
        # the discriminator's raw optimiser is stepped so global_step counts VAE steps only
        opt.step() if lightning_step else opt.optimizer.step()
        return None

    # ---- training ---------------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int) -> None:
        hp = self.hparams
        opt_g, opt_d = self.optimizers()
        step = self.global_step
        streams = batch_streams(batch)
        weights = hp.stream_weights or {}
        use_disc = 0 <= hp.disc_start <= step
        gen = step_generator(hp.seed, step=step, rank=self.global_rank, device=self.device)
        total, recons, logs = 0.0, {}, {}
        for name, x in streams.items():
            loss, recons[name], slogs = self._generator_loss(x, gen, use_disc, name)
            total = total + weights.get(name, 1.0) * loss
            logs.update(slogs)
        bad = self._finite_backward_step(total, opt_g, list(self.vae.parameters()), True)
        bad = f"VAE {bad}" if bad else None
        if bad is None:
            if self.lr_schedulers() is not None:
                self.lr_schedulers().step()
            self.ema.update(self.vae)
        if use_disc:
            d_total = 0.0
            for name, x in streams.items():
                d_loss, dlogs = self._disc_loss(x, recons[name], name)
                d_total = d_total + d_loss
                logs.update(dlogs)
            d_bad = self._finite_backward_step(d_total, opt_d, list(self.disc.parameters()), False)
            bad = bad or (f"discriminator {d_bad}" if d_bad else None)
        self.nonfinite.record(bad is None, what=bad or "")
        logs["loss"] = total.detach() if torch.is_tensor(total) else torch.tensor(total)
        logs["nonfinite_steps"] = self.nonfinite.total.float()
        logs["lr"] = torch.tensor(opt_g.param_groups[0]["lr"])
        self.log_dict({f"train/{k}": v for k, v in logs.items()}, prog_bar=False)
        self.log(
            "train/psnr",
            torch.stack([v for k, v in logs.items() if k.endswith("/psnr")]).mean(),
            prog_bar=True,
        )
        if hp.media_every > 0 and step % hp.media_every == 0 and self.global_rank == 0:
            for name, x in streams.items():
                self._write_media(x[0], recons[name][0], f"train_{name}", step)

    def _media_root(self) -> Path:
        if self.hparams.media_dir:
            return module_output_path(self, self.hparams.media_dir)
        log_dir = self.trainer.log_dir if self.trainer is not None else None
        return Path(log_dir or ".") / "media"

    def _write_media(self, inp: torch.Tensor, out: torch.Tensor, tag: str, step: int) -> None:
        frames = side_by_side(inp, out)  # (T, H, 2W, 3) uint8
        path = write_mp4(frames, self._media_root() / f"{tag}_step{step:07d}.mp4")
        log_media(self.loggers, tag=f"media/{tag}", step=step, videos=[path], image=frames[0])

    # ---- validation (EMA weights) -----------------------------------------------------------
    def validation_step(self, batch: dict, batch_idx: int) -> None:
        for name, x in batch_streams(batch).items():
            ema = self.ema.module
            recon = ema.decode(ema.encode(x, stream=False), stream=False)
            self.log(f"val/{name}/psnr", psnr(recon, x).mean(), sync_dist=True)
            self.log(f"val/{name}/ssim", ssim(recon, x).mean(), sync_dist=True)
            self.log(
                f"val/{name}/rec",
                reconstruction_loss(recon, x, self.hparams.recon_loss),
                sync_dist=True,
            )
            if batch_idx == 0 and self.hparams.media_every > 0 and self.global_rank == 0:
                self._write_media(x[0], recon[0], f"val_{name}", self.global_step)

    # ---- checkpoints ------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # the tokenizer's own config (with latent statistics) for load_tokenizer / latent_stats
        checkpoint[CONFIG_KEY] = copy.deepcopy(self.ema.module.config)
        check_finite_state(checkpoint["state_dict"])
        # LightningCLI stores a callable here; drop it so the file loads with weights_only=True
        checkpoint.get("hyper_parameters", {}).pop("_instantiator", None)

    def on_train_end(self) -> None:
        if self.hparams.export_path and self.global_rank == 0:
            with atomic_path(module_output_path(self, self.hparams.export_path)) as tmp:
                save_tokenizer(self.ema.module, tmp)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        config = checkpoint.get(CONFIG_KEY)
        if config is not None:
            for vae in (self.vae, self.ema.module):
                vae.set_latent_stats(config["latent_mean"], config["latent_std"])
