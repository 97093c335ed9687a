"""The weights digest: exact, read once per unchanged pipeline, and changed by any change to a weight."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def pipe(sd15_model):
    from schedcmp.model import pipeline

    return pipeline.load(str(sd15_model), "cpu", "fp32").pipe


def counting(monkeypatch) -> list[int]:
    """Counts the weights actually read (hashed) from here on."""
    from schedcmp.model import weights

    read = []
    real = weights.hash_bytes
    monkeypatch.setattr(weights, "hash_bytes", lambda digest, tensor: (read.append(1), real(digest, tensor)))
    return read


def test_a_second_digest_of_the_same_pipeline_reads_no_weight(pipe, monkeypatch):
    from schedcmp.model import weights

    first = weights.weights_digest(pipe)
    read = counting(monkeypatch)
    assert weights.weights_digest(pipe) == first and not read
    assert first.startswith(weights.PREFIX) and len(first) == len(weights.PREFIX) + 64


def test_a_weight_changed_in_place_or_replaced_changes_the_digest(pipe, monkeypatch):
    from schedcmp.model import weights

    first = weights.weights_digest(pipe)
    parameter = next(pipe.unet.parameters())
    with torch.no_grad():
        parameter.mul_(1.0001)  # in place: the tensor's version counter moves
    changed = weights.weights_digest(pipe)
    assert changed != first
    read = counting(monkeypatch)
    with torch.no_grad():
        parameter.div_(1.0001)
        parameter.copy_(parameter.clone())  # back to where a float round trip leaves it
    assert weights.weights_digest(pipe) and read  # read again: it was changed, whatever it is now
    pipe.unet.conv_in.weight = torch.nn.Parameter(pipe.unet.conv_in.weight.detach().clone() + 1)  # replaced
    assert weights.weights_digest(pipe) not in (first, changed)


def test_the_digest_is_the_bytes_on_any_thread_count(pipe):
    from schedcmp.model import weights

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = weights.weights_digest(pipe)
        weights._digests.clear()
        torch.set_num_threads(2)
        assert weights.weights_digest(pipe) == one
    finally:
        torch.set_num_threads(threads)


def test_a_folder_written_with_the_old_fingerprint_is_still_checked(pipe):
    from schedcmp.model import weights

    old = weights.legacy_fingerprint(pipe)
    assert not old.startswith(weights.PREFIX) and weights.same_weights(old, pipe)
    with torch.no_grad():
        next(pipe.vae.parameters()).add_(0.5)
    assert not weights.same_weights(old, pipe)


def test_a_second_compare_on_the_same_pipeline_reads_no_weight_and_needs_no_warm_up(pipe, monkeypatch, tmp_path):
    """The issue's 10.7 s outside the pipeline calls of every repeated compare(): the digest and the warm-up."""
    import functools

    import schedcmp

    first = schedcmp.compare(pipe, "a horse", steps=2, schedulers="ddim", out=tmp_path / "a", progress=False)
    assert first.results.shared_seconds.warmup is not None
    read, calls = counting(monkeypatch), []
    real = type(pipe).__call__

    @functools.wraps(real)
    def call(self, *args, **kwargs):
        calls.append(kwargs.get("num_inference_steps"))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(type(pipe), "__call__", call)
    again = schedcmp.compare(pipe, "a horse", steps=2, schedulers="ddim", out=tmp_path / "b", progress=False)
    assert not read and calls == [2] and again.results.shared_seconds.warmup is None
    assert again.results.weights_fingerprint == first.results.weights_fingerprint
