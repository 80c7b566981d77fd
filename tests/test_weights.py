"""Loading weights: the bundled file, path=, the Hugging Face Hub (mocked: tests never touch the network),
and clear errors for missing, damaged or foreign files; the wheel ships the weights as package data."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import gradcam_jax as gj
from gradcam_jax.models import weights


@pytest.fixture(scope="module")
def bundled_copy(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "copy.msgpack"
    shutil.copy(weights.bundled_path(), path)
    return path


def test_bundled_file_matches_recorded_checksum():
    assert weights.sha256_of(weights.bundled_path()) == weights.BVLC_SHA256


def test_path_loads_the_same_variables(googlenet, bundled_copy, cat):
    model, variables = gj.load_googlenet(bundled_copy, sha256=weights.BVLC_SHA256)
    np.testing.assert_array_equal(gj.top_k(model, variables, cat, 1)[1], gj.top_k(*googlenet, cat, 1)[1])


def test_missing_file_says_how_to_restore(tmp_path, monkeypatch):
    with pytest.raises(gj.WeightsError, match=r"nope.msgpack is missing$"):  # the user's own file: no git hint
        gj.load_googlenet(tmp_path / "nope.msgpack")
    monkeypatch.setattr(weights, "bundled_path", lambda: tmp_path / "bvlc_googlenet.msgpack")
    with pytest.raises(gj.WeightsError, match=r"missing.*git checkout"):
        gj.load_googlenet()


def test_a_pytorch_checkpoint_says_how_to_convert_it(tmp_path):
    checkpoint = tmp_path / "googlenet-1378be20.pth"
    checkpoint.write_bytes(b"PK\x03\x04 a zip, as torch.save writes")
    with pytest.raises(
        gj.WeightsError, match=r"PyTorch checkpoint.*scripts/convert_torchvision.py --src .*1378be20.pth"
    ) as err:
        gj.load_googlenet(variant="torchvision", path=checkpoint)
    assert "git" not in str(err.value) and "\n" not in str(err.value)


def test_corrupt_file_fails_its_checksum(tmp_path, bundled_copy):
    damaged = tmp_path / "damaged.msgpack"
    data = bytearray(bundled_copy.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside a weight: silent garbage without the checksum
    damaged.write_bytes(bytes(data))
    with pytest.raises(gj.WeightsError, match=r"damaged.msgpack is corrupt"):
        gj.load_googlenet(damaged, sha256=weights.BVLC_SHA256)


def test_truncated_file_is_an_error_even_without_checksum(tmp_path, bundled_copy):
    truncated = tmp_path / "truncated.msgpack"
    truncated.write_bytes(bundled_copy.read_bytes()[:1000])
    with pytest.raises(gj.WeightsError, match="truncated.msgpack"):
        gj.load_googlenet(truncated)


def test_msgpack_that_holds_no_variables_is_an_error(tmp_path):
    not_variables = tmp_path / "list.msgpack"
    not_variables.write_bytes(b"\x93\x01\x02\x03")  # msgpack for the list [1, 2, 3], written by hand
    with pytest.raises(gj.WeightsError, match="list.msgpack holds no variables"):
        gj.load_googlenet(not_variables)


def test_weights_of_another_architecture_are_rejected(tmp_path):
    other = tmp_path / "other.msgpack"
    weights.write_variables(other, {"params": {"Dense_0": {"kernel": np.zeros((3, 2), np.float32)}}})
    with pytest.raises(gj.WeightsError, match="do not fit"):
        gj.load_googlenet(other)


def test_hub_download_goes_through_the_same_loader(monkeypatch, bundled_copy):
    import huggingface_hub

    calls = []

    def fake_download(repo_id, filename, revision=None, **kwargs):
        calls.append((repo_id, filename, revision))
        return str(bundled_copy)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    model, variables = gj.load_googlenet(
        hf_repo_id="someone/googlenet", hf_filename="w.msgpack", sha256=weights.BVLC_SHA256
    )
    assert calls == [("someone/googlenet", "w.msgpack", None)]
    assert "inception_5b" in variables["params"]


def test_hub_offline_is_a_clear_error(monkeypatch):
    import huggingface_hub

    def offline(*args, **kwargs):
        raise huggingface_hub.errors.LocalEntryNotFoundError("offline and not in the cache")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(gj.WeightsError, match=r"offline.*path="):
        gj.load_googlenet(hf_repo_id="someone/googlenet")


def test_hub_unreachable_fails_at_once_without_retries(monkeypatch):
    import socket

    import huggingface_hub

    def not_cached(*args, local_files_only=False, **kwargs):
        assert local_files_only, "the network download must not be tried when the Hub is unreachable"
        raise huggingface_hub.errors.LocalEntryNotFoundError("not in the cache")

    def no_route(address, timeout=None):
        assert timeout is not None and timeout <= 5
        raise OSError(101, "Network is unreachable")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", not_cached)
    monkeypatch.setattr(socket, "create_connection", no_route)
    with pytest.raises(gj.WeightsError, match=r"no connection to huggingface.co: Network is unreachable.*path="):
        gj.load_googlenet(hf_repo_id="someone/googlenet")


def test_unknown_variant_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown variant 'resnet'"):
        gj.load_googlenet(variant="resnet")
