"""Stub package: only `vit.py` is vendored (see ../../README.md)."""
