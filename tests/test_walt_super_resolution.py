"""Super-resolution stages of the cascade (W.A.L.T Sec. 4.5): the 2x low-res input, noise-
conditioning augmentation through AdaLN, training from pairs, sampling, resume and the configs."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from models.lowres import LowresUpsampler
from tests.test_walt_module import _trainer
from tests.unet_fixtures import perturb, tiny_unet
from tests.walt_fixtures import (
    FRAMES,
    SR_SIZE,
    clip_stream,
    repeat_loader,
    sr_stream,
    tiny_module,
    tiny_sr_backbone,
    tiny_sr_module,
    tiny_tokenizer_file,
)
from walt.core.generation import sampling_stream
from walt.core.super_resolution import downsample_pixels, lowres_condition
from walt.diffusion import GaussianDiffusion
from walt.lightning import SamplingConfig, SuperResolutionConfig

warnings.filterwarnings("ignore", ".*does not have many workers.*")
LABELS = torch.tensor([0, 1])


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return tiny_tokenizer_file(tmp_path_factory.mktemp("tok") / "tiny.safetensors")


def _lowres(module, b: int = 2, frames: int = FRAMES, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    pixels = torch.rand(b, 3, frames, SR_SIZE // 2, SR_SIZE // 2, generator=g) * 2 - 1
    return module.codec.encode(pixels)  # (B, c, t, h/2, w/2)


def _sample(module, z_lr, *, sampling=None, **kw):
    kw = {"stream": sampling_stream(labels=LABELS[: z_lr.shape[0]]), "decode": False,
          "generator": torch.Generator().manual_seed(0), **kw}
    changes = {"num_inference_steps": 2, **(sampling or {})}
    return module.generate(lowres_latents=z_lr, sampling=module.sampling.override(changes), **kw)


@pytest.mark.parametrize("upsample", ["learned", "nearest", "bilinear"])
@pytest.mark.parametrize("frames", [FRAMES, 1], ids=["video", "image"])
def test_each_stage_doubles_h_and_w(tok, upsample, frames):
    module = tiny_sr_module(tok, backbone=tiny_sr_backbone(lowres_upsample=upsample))
    z_lr = _lowres(module, frames=frames)
    b, c, t, h, w = z_lr.shape
    z = _sample(module, z_lr, num_frames=frames)
    assert z.shape == (b, c, t, 2 * h, 2 * w) and torch.isfinite(z).all()
    up = LowresUpsampler(channels=c, mode=upsample)
    assert up(z).shape == (b, c, t, 4 * h, 4 * w)  # and the next stage doubles again
    pixels = module.codec.decode(z)
    assert pixels.shape == (b, 3, frames, SR_SIZE, SR_SIZE)


def test_noise_level_reaches_adaln_and_changes_the_output(tok):
    module = tiny_sr_module(tok)
    perturb(module.backbone, scale=0.1)  # zero-initialised head and AdaLN hide every input
    net = module.backbone
    levels, adaln = [], []
    net.extra_embed.register_forward_hook(lambda m, args, out: levels.append(args[0].clone()))
    net.shared_adaln.register_forward_hook(lambda m, args, out: adaln.append(args[0].clone()))
    z_lr = _lowres(module)
    outs = [_sample(module, z_lr, sampling={"noise_level": v}, use_ema=False) for v in (0.1, 0.3)]
    # on the timesteps' scale: 0.1 of 1000 steps is step 100
    torch.testing.assert_close(levels[0], torch.full((2, 1), 100.0))
    torch.testing.assert_close(levels[-1], torch.full((2, 1), 300.0))
    assert not torch.allclose(outs[0], outs[1])
    # Only the level differs: the AdaLN vector and the prediction change.
    x, ts = torch.randn(2, 8, 3, 4, 4), torch.tensor([100.0, 500.0])
    adaln.clear()
    preds = [net(x, ts, lowres=z_lr, extra_cond=torch.full((2, 1), v)) for v in (0.1, 0.3)]
    assert not torch.allclose(adaln[0], adaln[1])
    assert not torch.allclose(preds[0], preds[1])


@pytest.mark.parametrize("upsample", ["learned", "nearest", "bilinear"])
def test_level_zero_shows_the_clean_upsampled_latent(tok, upsample):
    module = tiny_sr_module(tok, backbone=tiny_sr_backbone(lowres_upsample=upsample))
    up = module.backbone.lowres_upsampler
    if up.proj is not None:  # a learned projection that is not the nearest-neighbour start
        torch.nn.init.normal_(up.proj.weight)
        torch.nn.init.normal_(up.proj.bias)
    inputs = []
    module.backbone.patch_embed.register_forward_hook(lambda m, a, o: inputs.append(a[0]))
    z_lr = _lowres(module)
    c = z_lr.shape[1]
    seen = {}
    for level in (0.0, 0.2):
        inputs.clear()
        _sample(module, z_lr, sampling={"noise_level": level, "num_inference_steps": 1},
                use_ema=False)
        # patch 1: the last c input channels are the upsampled low-res latent (B, c, t, 2h, 2w)
        seen[level] = rearrange(inputs[0][..., -c:], "b t h w c -> b c t h w")
    if up.proj is None:
        frames = rearrange(z_lr, "b c t h w -> (b t) c h w")
        expected = F.interpolate(frames, scale_factor=2, mode=upsample)
        expected = rearrange(expected, "(b t) c h w -> b c t h w", b=z_lr.shape[0])
    else:
        feats = torch.einsum("bcthw,oc->bthwo", z_lr, up.proj.weight) + up.proj.bias
        expected = rearrange(feats, "b t h w (c p q) -> b c t (h p) (w q)", p=2, q=2)
    torch.testing.assert_close(seen[0.0], expected)
    assert not torch.allclose(seen[0.2], expected, atol=1e-3)


def test_augmentation_follows_the_diffusion_forward_process():
    diffusion = GaussianDiffusion()
    z = torch.randn(3, 8, 2, 2, 2)
    out = lowres_condition({}, z, levels=torch.tensor([0.0, 0.15, 1.0]), diffusion=diffusion,
                           generator=torch.Generator().manual_seed(0))
    noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(0))
    expected = diffusion.q_sample(z, torch.tensor([0, 150, 999]), noise)
    assert torch.equal(out["lowres"][0], z[0])  # level 0: the clean latent
    torch.testing.assert_close(out["lowres"][1:], expected[1:])
    torch.testing.assert_close(out["noise_level"], torch.tensor([0.0, 0.15, 0.999]))
    levels = SuperResolutionConfig(max_noise_level=0.25).sample_levels(
        1000, generator=torch.Generator().manual_seed(0))
    assert 0 <= levels.min() and levels.max() <= 0.25 and levels.std() > 0.05


def _pairs(module, stream: dict) -> dict:
    """The stream as precomputed pairs: raw latents of the clip and of its 2x-downsampled
    pixels, no pixels."""
    vae = module.codec.vae
    pairs = {k: v for k, v in stream.items() if k != "pixels"}
    pairs["latents"] = vae.encode(stream["pixels"])
    pairs["lowres_latents"] = vae.encode(downsample_pixels(stream["pixels"]))
    return pairs


def test_training_from_pairs_never_runs_the_tokenizer(tok, tmp_path, monkeypatch):
    module = tiny_sr_module(tok)
    stream = sr_stream()
    pairs = _pairs(module, stream)
    vae = module.codec.vae
    calls, encode = [], vae.encode
    monkeypatch.setattr(vae, "encode", lambda x, *a, **k: calls.append(x.shape) or encode(x))

    def loss(s):
        g = torch.Generator().manual_seed(0)
        z0 = module.codec.latents(s)
        s = module._with_lowres(s, z0, training=True, generator=g)
        conds = module._conditions(s, z0, training=True, generator=g)
        return module._diffusion_loss(module.backbone, z0, conds, g,
                                      timesteps=torch.tensor([10, 600]), p_self_cond=0.0)

    on_the_fly = loss(stream)
    assert calls == [(2, 3, FRAMES, SR_SIZE, SR_SIZE), (2, 3, FRAMES, SR_SIZE // 2, SR_SIZE // 2)]
    calls.clear()
    torch.testing.assert_close(loss(pairs), on_the_fly)
    _trainer(tmp_path, 2).fit(module, repeat_loader({"video": pairs}, 2))
    assert calls == [] and module.global_step == 2


def test_resume_and_ema_of_an_sr_stage_continue_the_same_run(tok, tmp_path):
    """2N straight steps equal N steps, a checkpoint and N more, EMA included; the checkpoint
    loads back as an SR module that upsamples."""
    batch = {"video": sr_stream()}
    torch.manual_seed(0)
    straight = tiny_sr_module(tok)
    _trainer(tmp_path / "a", 2).fit(straight, repeat_loader(batch, 2))
    torch.manual_seed(0)
    first = tiny_sr_module(tok)
    trainer = _trainer(tmp_path / "b", 1)
    trainer.fit(first, repeat_loader(batch, 2))
    ckpt = tmp_path / "half.ckpt"
    trainer.save_checkpoint(ckpt)
    torch.manual_seed(999)
    resumed = tiny_sr_module(tok)
    _trainer(tmp_path / "c", 2).fit(resumed, repeat_loader(batch, 2), ckpt_path=ckpt)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, msg=f"{name} differs after resume")
    saved = torch.load(ckpt, weights_only=True)["state_dict"]
    assert any(k.startswith("ema.") and "lowres_upsampler" in k for k in saved)
    from walt.lightning import WALTModule

    loaded = WALTModule.load_from_checkpoint(ckpt, backbone=tiny_sr_backbone(),
                                             diffusion=GaussianDiffusion())
    assert loaded.is_super_resolution and loaded.sampling.noise_level == 0.15
    z_lr = _lowres(loaded)
    assert _sample(loaded, z_lr).shape == (2, 8, 3, 4, 4)


def test_super_resolution_errors_name_the_argument(tok):
    module = tiny_sr_module(tok)
    z_lr = _lowres(module)
    with pytest.raises(ValueError, match="needs lowres_latents"):
        module.generate(stream=sampling_stream(labels=LABELS))
    with pytest.raises(ValueError, match=r"lowres_latents must be \(2, 8, 3, 2, 2\)"):
        _sample(module, z_lr[..., :1])
    with pytest.raises(ValueError, match="noise_level must be in"):
        _sample(module, z_lr, sampling={"noise_level": 2.0})
    base = tiny_module(tok)
    with pytest.raises(ValueError, match="not a super-resolution stage"):
        base.generate(stream=sampling_stream(labels=LABELS), lowres_latents=z_lr)
    assert not base.is_super_resolution
    with pytest.raises(ValueError, match="lowres_channels=8"):
        tiny_module(tok, super_resolution=SuperResolutionConfig())
    with pytest.raises(ValueError, match="super_resolution=None"):
        tiny_module(tok, backbone=tiny_sr_backbone())
    with pytest.raises(ValueError, match="lowres_upsample"):
        tiny_sr_backbone(lowres_upsample="cubic")
    with pytest.raises(ValueError, match="max_noise_level"):
        SuperResolutionConfig(max_noise_level=-0.1)


def test_unets_cannot_be_sr_stages(tok):
    unet = tiny_unet(in_channels=8, num_classes=3, num_extra_cond=1)
    with pytest.raises(ValueError, match="models.WindowedDiT"):
        tiny_module(tok, backbone=unet, super_resolution=SuperResolutionConfig())


def test_sample_logger_shows_lowres_output_and_truth(tok, tmp_path, monkeypatch):
    import walt.lightning.callbacks as callbacks
    from walt.lightning import SampleLogger

    shown = []

    def spy(videos, out, **kw):
        shown.append(videos)
        return write(videos, out, **kw)

    write = callbacks.write_samples
    monkeypatch.setattr(callbacks, "write_samples", spy)
    module = tiny_sr_module(tok)
    batch = {"video": sr_stream(3)}
    trainer = _trainer(tmp_path, 2, callbacks=[SampleLogger(every_n_steps=2, num_samples=2,
                                                             sampling={"num_inference_steps": 2})])
    trainer.fit(module, repeat_loader(batch, 2))
    (videos,) = shown
    # low-res | bicubic | SR | truth
    assert videos.shape == (2, 3, FRAMES, SR_SIZE, 4 * SR_SIZE)
    truth = module.codec.decode(module.codec.encode(batch["video"]["pixels"][:2]))
    torch.testing.assert_close(videos[..., 3 * SR_SIZE:], truth)
    small = module.codec.decode(module.codec.encode(downsample_pixels(batch["video"]["pixels"][:2])))
    big = F.interpolate(rearrange(small, "b c t h w -> (b t) c h w"), scale_factor=2)
    torch.testing.assert_close(videos[..., :SR_SIZE],
                               rearrange(big, "(b t) c h w -> b c t h w", b=2))
    assert sorted(p.name for p in tmp_path.rglob("step_0000002/*.mp4")) == [
        "sample_000.mp4", "sample_001.mp4"]


def test_clip_stream_is_not_an_sr_batch(tok):
    """A base-resolution stream with no low-res source fails clearly in an SR module."""
    module = tiny_sr_module(tok)
    stream = {k: v for k, v in clip_stream().items() if k != "pixels"}
    with pytest.raises(KeyError, match="lowres_latents"):
        module._with_lowres(stream, torch.zeros(2, 8, 3, 4, 4), training=True,
                            generator=torch.Generator())


def test_predict_upsamples_the_batch_clips(tok):
    module = tiny_sr_module(tok, sampling=SamplingConfig(num_inference_steps=1))
    out = module.predict_step({"video": sr_stream()}, 0)
    assert out["video"]["pixels"].shape == (2, 3, FRAMES, SR_SIZE, SR_SIZE)
