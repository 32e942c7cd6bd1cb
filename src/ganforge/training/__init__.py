"""Training: the GAN step and loop, EMA, checkpoints, batch sampling."""
