"""Pretrained weights, shipped as package data `gradcam_jax.pretrained` (see pyproject.toml)."""
