"""The W.A.L.T tokenizer: a causal 3D-CNN VAE (MAGVIT-v2 architecture, continuous latent)."""

from tokenizer.loading import load_tokenizer, save_tokenizer
from tokenizer.network.distribution import DiagonalGaussian
from tokenizer.network.vae import PRESETS, CausalVAE
from tokenizer.training.module import TokenizerModule

__all__ = [
    "PRESETS",
    "CausalVAE",
    "DiagonalGaussian",
    "TokenizerModule",
    "load_tokenizer",
    "save_tokenizer",
]
