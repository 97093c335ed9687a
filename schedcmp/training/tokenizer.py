"""A CLIP tokenizer whose byte-level BPE vocabulary is learnt from the training captions."""

from __future__ import annotations

from collections import Counter, defaultdict

from tokenizers import pre_tokenizers
from transformers import CLIPTokenizer

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
# The longest caption variant is 16 tokens; 32 leaves room for user prompts and keeps the encoder cheap.
MAX_LENGTH = 32
END_OF_WORD = "</w>"


def caption_words(captions: list[str]) -> Counter[tuple[str, ...]]:
    """Words as CLIP splits them (normalised, pre-tokenised, byte-level), as symbol tuples with counts."""
    backend = CLIPTokenizer(vocab={BOS: 0, EOS: 1}, merges=[]).backend_tokenizer
    words: Counter[tuple[str, ...]] = Counter()
    for caption in captions:
        for word, _ in backend.pre_tokenizer.pre_tokenize_str(backend.normalizer.normalize_str(caption)):
            words[(*word[:-1], word[-1] + END_OF_WORD)] += 1
    return words


def learn_merges(words: Counter[tuple[str, ...]], max_merges: int) -> list[tuple[str, str]]:
    """Byte-pair encoding (Sennrich et al. 2016): repeatedly merge the most frequent adjacent pair.

    Ties go to the alphabetically first pair, so the vocabulary is the same on every run.
    """
    symbols = [list(word) for word in words]
    counts = list(words.values())
    pair_counts: Counter[tuple[str, str]] = Counter()
    holders: defaultdict[tuple[str, str], set[int]] = defaultdict(set)

    def account(index: int, sign: int) -> None:
        word = symbols[index]
        for pair in zip(word, word[1:]):
            pair_counts[pair] += sign * counts[index]
            if sign > 0:
                holders[pair].add(index)

    for index in range(len(symbols)):
        account(index, +1)
    merges: list[tuple[str, str]] = []
    while len(merges) < max_merges:
        candidates = [(pair, n) for pair, n in pair_counts.items() if n > 0]
        if not candidates:
            break
        best = min(candidates, key=lambda item: (-item[1], item[0]))[0]
        merges.append(best)
        for index in sorted(holders.pop(best, ())):
            account(index, -1)
            word, merged, position = symbols[index], [], 0
            while position < len(word):
                if position + 1 < len(word) and (word[position], word[position + 1]) == best:
                    merged.append(word[position] + word[position + 1])
                    position += 2
                else:
                    merged.append(word[position])
                    position += 1
            symbols[index] = merged
            account(index, +1)
        del pair_counts[best]
    return merges


def build_clip_tokenizer(captions: list[str], max_merges: int = 3500) -> CLIPTokenizer:
    """The base alphabet is all 256 byte symbols, alone and as word ends, as in CLIP, so any prompt
    tokenises without unknown tokens; merges stop at `max_merges` or when every word is one token."""
    vocab: dict[str, int] = {BOS: 0, EOS: 1}
    for symbol in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab.setdefault(symbol, len(vocab))
        vocab.setdefault(symbol + END_OF_WORD, len(vocab))
    merges = learn_merges(caption_words(captions), max_merges)
    for left, right in merges:
        vocab.setdefault(left + right, len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=MAX_LENGTH)
