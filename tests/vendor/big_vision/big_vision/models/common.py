"""Stub of big_vision.models.common: `vit.load` merges checkpoints with it; not vendored."""


def merge_params(*args, **kwargs):
    raise NotImplementedError("big_vision.models.common is not vendored: checkpoint loading is not available here")
