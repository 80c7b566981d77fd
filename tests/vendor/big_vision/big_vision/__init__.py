"""Stub package: only `big_vision.models.vit` is vendored (see ../README.md)."""
