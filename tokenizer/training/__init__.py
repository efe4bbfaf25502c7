"""Training the tokenizer: the Lightning module (``TokenizerModule``), its losses (reconstruction,
KL, perceptual, GAN with LeCAM) and the 3D discriminator."""
