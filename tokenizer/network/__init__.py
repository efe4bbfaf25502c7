"""The tokenizer network: MAGVIT-v2's causal 3D-CNN encoder and decoder around a diagonal
Gaussian latent (``CausalVAE``), with causal convolutions, adaptive GroupNorm and the streaming
and tiling that bound its memory."""
