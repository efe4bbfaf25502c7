"""The W.A.L.T tokenizer: a causal 3D-CNN VAE (MAGVIT-v2 architecture, continuous latent)."""

from tokenizer.distribution import DiagonalGaussian
from tokenizer.loading import load_tokenizer, save_tokenizer
from tokenizer.module import TokenizerModule
from tokenizer.vae import PRESETS, CausalVAE

__all__ = [
    "PRESETS",
    "CausalVAE",
    "DiagonalGaussian",
    "TokenizerModule",
    "load_tokenizer",
    "save_tokenizer",
]
