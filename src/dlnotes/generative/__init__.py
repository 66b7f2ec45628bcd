"""Lectures 11-12: generative models (GANs, VAEs, flows, autoregressive, diffusion)."""
