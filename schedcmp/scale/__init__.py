"""Sweeps spread over processes: shards, torchrun ranks, and merging their parts."""
