"""daebench: a reproducibility pipeline for diffusion autoencoders."""
__version__ = "0.1.0"
