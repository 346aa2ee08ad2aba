"""Diversity and attractor diagnostics over sampled texts: pure functions of strings.

Words are lower-cased runs of letters, digits and apostrophes (punctuation is dropped), so
"Good." and "good" are the same word.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Sequence

_WORD = re.compile(r"[a-z0-9']+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct n-grams / all n-grams over whitespace tokens of all texts (Li et al. 2016).

    1.0 when no n-gram repeats; near 0 when the texts repeat one phrase. 0.0 when the texts
    hold no n-gram at all.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    total, seen = 0, set()
    for text in texts:
        grams = ngrams(text.split(), n)
        total += len(grams)
        seen.update(grams)
    return len(seen) / total if total else 0.0


def mean_and_stderr(values: Sequence[float]) -> tuple[float, float]:
    """Sample mean and its standard error (0 for fewer than two values)."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def self_bleu(texts: Sequence[str], max_n: int = 4, epsilon: float = 0.1) -> float:
    """Mean BLEU of each text against all the others as references (Zhu et al. 2018, Texygen).

    BLEU-``max_n`` with uniform weights: modified n-gram precisions (counts clipped by the
    largest count in any other text), brevity penalty against the closest other length, and
    ``epsilon`` in place of a zero numerator (Chen & Cherry 2014, method 1). Orders longer
    than a text are left out of its geometric mean. 1.0 when all texts are identical; lower
    for diverse texts. Runs in time linear in the total number of n-grams.

    Args:
        texts: at least two texts.
    """
    if len(texts) < 2:
        raise ValueError("self-BLEU needs at least two texts")
    tokens = [words(t) for t in texts]
    counts = [[Counter(ngrams(t, n)) for n in range(1, max_n + 1)] for t in tokens]
    # for each n-gram: the two largest counts over texts, with the text holding the largest
    best: list[dict[tuple, tuple[int, int, int]]] = [{} for _ in range(max_n)]
    for i, per_n in enumerate(counts):
        for n, counter in enumerate(per_n):
            table = best[n]
            for gram, c in counter.items():
                top, top_i, second = table.get(gram, (0, -1, 0))
                if c > top:
                    table[gram] = (c, i, top)
                elif c > second:
                    table[gram] = (top, top_i, c)
    lengths = Counter(len(t) for t in tokens)
    scores = []
    for i, per_n in enumerate(counts):
        log_p, orders = 0.0, 0
        for n, counter in enumerate(per_n):
            total = sum(counter.values())
            if total == 0:
                continue
            clipped = 0
            for gram, c in counter.items():
                top, top_i, second = best[n][gram]
                clipped += min(c, second if top_i == i else top)
            log_p += math.log(clipped / total if clipped else epsilon / total)
            orders += 1
        if orders == 0:
            scores.append(0.0)
            continue
        c = len(tokens[i])
        others = lengths.copy()
        others[c] -= 1
        r = min((length for length, k in others.items() if k > 0), key=lambda length: (abs(length - c), length))
        bp = 1.0 if c > r else math.exp(1 - r / c)
        scores.append(bp * math.exp(log_p / orders))
    return sum(scores) / len(scores)


def document_frequency(texts: Sequence[str], n: int) -> Counter:
    """For each word n-gram: in how many of the texts it appears."""
    df: Counter = Counter()
    for text in texts:
        df.update(set(ngrams(words(text), n)))
    return df


def top_phrase(texts: Sequence[str], n: int) -> tuple[str, float]:
    """The word n-gram found in the most texts, and the share of texts that contain it."""
    df = document_frequency(texts, n)
    if not df or not texts:
        return "", 0.0
    gram, count = min(df.items(), key=lambda kv: (-kv[1], kv[0]))
    return " ".join(gram), count / len(texts)


def attractor(policy_texts: Sequence[str], base_texts: Sequence[str], n: int = 3) -> dict:
    """How far outputs stop depending on the prompt: the policy's most common n-gram across
    its samples (one sample per prompt), the share of samples containing it, and the share of
    the base policy's samples that contain the same phrase; likewise the base's own top phrase.
    """
    phrase, share = top_phrase(policy_texts, n)
    base_phrase, base_share = top_phrase(base_texts, n)
    gram = tuple(phrase.split())
    in_base = document_frequency(base_texts, n)[gram] / len(base_texts) if base_texts and gram else 0.0
    return {
        "n": n,
        "phrase": phrase,
        "share": share,
        "share_in_base": in_base,
        "base_phrase": base_phrase,
        "base_share": base_share,
    }


def phrase_growth(policy_texts: Sequence[str], base_texts: Sequence[str], n: int = 2, k: int = 10) -> list[dict]:
    """The ``k`` word n-grams whose share of samples grew most from base to policy (the
    "wedding party" detector): phrase, share in policy, share in base, and the ratio of the
    shares with one pseudo-count added to each.
    """
    dp, db = document_frequency(policy_texts, n), document_frequency(base_texts, n)
    n_p, n_b = max(len(policy_texts), 1), max(len(base_texts), 1)
    rows = []
    for gram, count in dp.items():
        gain = count / n_p - db[gram] / n_b
        if gain > 0:
            ratio = ((count + 1) / (n_p + 1)) / ((db[gram] + 1) / (n_b + 1))
            rows.append(
                {
                    "phrase": " ".join(gram),
                    "share": count / n_p,
                    "share_in_base": db[gram] / n_b,
                    "ratio": ratio,
                    "gain": gain,
                }
            )
    rows.sort(key=lambda r: (-r["gain"], r["phrase"]))
    return rows[:k]
