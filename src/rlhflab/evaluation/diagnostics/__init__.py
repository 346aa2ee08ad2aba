"""Diagnostics: pure functions over samples, scores and log-probabilities, one question each.

- ``text``: diversity (distinct-n, self-BLEU) and attractors (top phrase, phrase growth)
- ``overoptimization``: Gao et al. fits of gold gain against sqrt(KL); the gold peak
- ``calibration``: reliability bins and expected calibration error
- ``exploitation``: change of a biased rater's favourite feature against the gold change
- ``embeddings``: spread of sentence embeddings (optional embedding model)
"""

from rlhflab.evaluation.diagnostics.calibration import expected_calibration_error, reliability_bins
from rlhflab.evaluation.diagnostics.embeddings import embedding_spread
from rlhflab.evaluation.diagnostics.exploitation import exploitation
from rlhflab.evaluation.diagnostics.overoptimization import GaoFit, gao_fit, gold_peak, moving_average
from rlhflab.evaluation.diagnostics.text import (
    attractor,
    distinct_n,
    mean_and_stderr,
    phrase_growth,
    self_bleu,
    top_phrase,
    words,
)

__all__ = [
    "GaoFit",
    "attractor",
    "distinct_n",
    "embedding_spread",
    "expected_calibration_error",
    "exploitation",
    "gao_fit",
    "gold_peak",
    "mean_and_stderr",
    "moving_average",
    "phrase_growth",
    "reliability_bins",
    "self_bleu",
    "top_phrase",
    "words",
]
