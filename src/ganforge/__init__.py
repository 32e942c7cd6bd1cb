"""ganforge: train GANs on your own images and videos and turn them into a curated asset library."""

__version__ = "0.1.0"
