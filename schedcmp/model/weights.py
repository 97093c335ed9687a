"""What a pipeline's weights are, as one digest: the same bytes give the same digest on every machine, device and
thread count, and it costs one read of the weights once per unchanged pipeline.

results.json (to refuse resuming with other weights), the reference cache and the plan fingerprint all key on
it. A second `compare()` on the same pipeline reuses the digest unless a weight was replaced or changed in
place: torch counts in-place changes in each tensor's version, and a replaced weight has other storage.
"""

from __future__ import annotations

import hashlib
import weakref
from typing import Any

PREFIX = "sha256:"  # digests written before 2026-12-04 were float sums without it (see legacy_fingerprint)

# pipeline -> (what its weights were when digested, the digest): one entry per live pipeline.
_digests: "weakref.WeakKeyDictionary[Any, tuple[tuple, str]]" = weakref.WeakKeyDictionary()


def named_weights(pipe: Any) -> list[tuple[str, Any]]:
    """Every weight and buffer of every torch module of the pipeline, by component and name, in a fixed order."""
    import torch

    found = []
    for name, component in sorted(pipe.components.items()):
        if isinstance(component, torch.nn.Module):
            found.extend((f"{name}.{key}", tensor) for key, tensor in component.state_dict().items())
    return found


def state_of(weights: list[tuple[str, Any]]) -> tuple:
    """What would show a change without reading the values: storage, version counter, shape, dtype, device."""
    return tuple(
        (
            name,
            tensor.data_ptr() if not tensor.is_meta else 0,
            tensor._version,
            tuple(tensor.shape),
            str(tensor.dtype),
            str(tensor.device),
        )
        for name, tensor in weights
    )


def weights_digest(pipe: Any) -> str:
    """sha256 of every weight's name, shape, dtype and bytes, memoised per pipeline until a weight changes.

    Weights an offloading pipeline keeps on the meta device count by their name, shape and dtype alone. A
    weight on a GPU is copied to the host in pieces to be hashed (hashing runs at about 2 GB/s on a CPU)."""
    weights = named_weights(pipe)
    state = state_of(weights)
    known = _digests.get(pipe)
    if known is not None and known[0] == state:
        return known[1]
    digest = hashlib.sha256()
    for name, tensor in weights:
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        if not tensor.is_meta:
            hash_bytes(digest, tensor)
    text = PREFIX + digest.hexdigest()
    try:
        _digests[pipe] = (state, text)
    except TypeError:  # an object that cannot be weakly referenced: digested again next time
        pass
    return text


# A weight is hashed in pieces of at most this many bytes: a GPU tensor's copy on the host stays small.
PIECE_BYTES = 64 * 2**20


def hash_bytes(digest: Any, tensor: Any) -> None:
    import torch

    flat = tensor.detach().reshape(-1)
    if flat.numel() == 0:
        return
    raw = flat.contiguous().view(torch.uint8)
    for start in range(0, raw.numel(), PIECE_BYTES):
        digest.update(raw[start : start + PIECE_BYTES].cpu().numpy())


def legacy_fingerprint(pipe: Any) -> str:
    """The fingerprint results.json held before the digest: each weight's shape, sum and sum of squares. Only to
    compare with a folder written then (float sums round differently with another thread count)."""
    import torch

    fingerprint = hashlib.sha256()
    for name, tensor in named_weights(pipe):
        fingerprint.update(f"{name}:{tuple(tensor.shape)}".encode())
        if not tensor.is_meta:
            with torch.no_grad():
                values = tensor.detach().float()
                fingerprint.update(f":{float(values.sum()):.9g}:{float((values * values).sum()):.9g}".encode())
    return fingerprint.hexdigest()


def same_weights(recorded: str, pipe: Any) -> bool:
    """Are the pipeline's weights the ones a results.json recorded (in either format)?"""
    if recorded.startswith(PREFIX):
        return recorded == weights_digest(pipe)
    return recorded == legacy_fingerprint(pipe)
