"""What evaluation samples from: a policy folder, a policy conditioned on a control token, or best-of-n.

Every method's output is one of these, so ``rlhflab evaluate`` and ``rlhflab compare`` treat
them alike: ``sample(prompts, ...)`` gives the continuations and, per sample, the KL to the
base policy and the mean per-token entropy where they can be measured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from rlhflab.core.errors import ConfigError, DataError, RlhflabError
from rlhflab.core.estimators import kl_estimators, masked_mean
from rlhflab.core.files import read_json
from rlhflab.models.loading import Loader
from rlhflab.models.sampling import policy_logprobs, sample, token_logprobs

SAMPLER_FILE = "sampler.json"
SAMPLING_FILE = "rlhflab_sampling.json"  # inside a policy folder: how to prompt it (control-token prefix)
MAX_N = 65_536
"""The most candidates per prompt best-of-n draws (its KL bound is then about 10 nats): a larger n is a mistake."""


@dataclass
class SampleBatch:
    texts: list[str]
    kl: list[float] | None = None
    """Per-sample estimate of KL(sampler || base), nats."""
    entropy: list[float] | None = None
    """Per-sample mean per-token entropy of the sampling distribution, nats."""


def best_of_n_kl_bound(n: int) -> float:
    """The analytic KL of best-of-n to its base policy for a continuous reward: log n - (n - 1) / n
    (Stiennon et al. 2020; an upper bound when rewards tie, Beirami et al. 2024)."""
    if n < 1:
        raise ConfigError(f"--n must be >= 1, got {n}")
    if n > MAX_N:
        raise ConfigError(f"--n must be <= {MAX_N}, got {n}")
    return math.log(n) - (n - 1) / n


def best_of_n_kl_estimate(selected: Sequence[float], pooled: Sequence[float], n: int) -> list[float]:
    """Per-sample KL estimate of best-of-n: log n + (n - 1) log F(r), F the base policy's reward CDF.

    The density ratio of best-of-n to its base is n F(r)^(n-1) for a continuous reward; F is
    estimated by the mid-rank empirical CDF of ``pooled`` (all n candidates of every prompt, so
    it assumes the reward's distribution does not depend much on the prompt).
    """
    pool = torch.tensor(sorted(pooled), dtype=torch.float64)
    out = []
    for r in selected:
        below = torch.searchsorted(pool, torch.tensor([r], dtype=torch.float64), right=False).item()
        upto = torch.searchsorted(pool, torch.tensor([r], dtype=torch.float64), right=True).item()
        cdf = (below + 0.5 * (upto - below)) / len(pool)
        out.append(math.log(n) + (n - 1) * math.log(max(cdf, 1e-12)))
    return out


class PolicySampler:
    """Samples from a causal LM; KL and entropy against ``base`` when given.

    ``prefix`` (a control token, for conditional training) is put before every prompt given to
    the policy, not to the base; ``vocab_size`` limits both to the base's vocabulary (the control
    tokens are never sampled).
    """

    def __init__(self, model, tokenizer, base=None, prefix: str = "", vocab_size: int | None = None):
        self.model, self.tokenizer, self.base, self.prefix = model.eval(), tokenizer, base, prefix
        self.vocab_size = vocab_size
        self.suppress = list(range(vocab_size, len(tokenizer))) if vocab_size is not None else []

    @torch.no_grad()
    def sample(self, prompts: Sequence[str], *, max_new_tokens: int, seed: int, temperature: float) -> SampleBatch:
        shown = [self.prefix + p for p in prompts]
        r = sample(
            self.model,
            self.tokenizer,
            shown,
            max_new_tokens=max_new_tokens,
            seed=seed,
            temperature=temperature,
            suppress_tokens=self.suppress,
            with_entropy=True,
        )
        logp, entropy = policy_logprobs(self.model, r, temperature, self.vocab_size)
        out = SampleBatch(r.responses, entropy=masked_mean(entropy, r.response_mask, dim=1).tolist())
        if self.base is not None:
            if self.prefix:  # the base reads the plain prompt followed by the same response tokens
                enc = self.tokenizer(list(prompts), return_tensors="pt", padding=True)
                ids = torch.cat([enc["input_ids"], r.response_ids], 1)
                attn = torch.cat([enc["attention_mask"], r.response_mask.long()], 1)
                logp_base, _ = token_logprobs(self.base, ids, attn, enc["input_ids"].shape[1], temperature)
            else:
                logp_base, _ = token_logprobs(self.base, r.input_ids, r.attention_mask, r.prompt_length, temperature)
            out.kl = kl_estimators(logp, logp_base, r.response_mask)["k1"].tolist()
        return out


class BestOfNSampler:
    """Draws n continuations per prompt from the base policy and keeps the one ``reward`` prefers."""

    def __init__(self, base, tokenizer, reward: Callable, n: int):
        if n < 1:
            raise ConfigError(f"--n must be >= 1, got {n}")
        self.base, self.tokenizer, self.reward, self.n = base.eval(), tokenizer, reward, n

    @torch.no_grad()
    def sample(self, prompts: Sequence[str], *, max_new_tokens: int, seed: int, temperature: float) -> SampleBatch:
        repeated = [p for p in prompts for _ in range(self.n)]
        r = sample(
            self.base, self.tokenizer, list(prompts), max_new_tokens=max_new_tokens, seed=seed,
            temperature=temperature, samples_per_prompt=self.n,
        )  # fmt: skip
        scores = torch.as_tensor(self.reward(repeated, r.responses), dtype=torch.float64).view(len(prompts), self.n)
        best = scores.argmax(1)
        texts = [r.responses[i * self.n + int(b)] for i, b in enumerate(best)]
        selected = scores[torch.arange(len(prompts)), best].tolist()
        return SampleBatch(texts, kl=best_of_n_kl_estimate(selected, scores.flatten().tolist(), self.n))


def best_of_n_spec(base: str, reward: str, n: int) -> dict:
    """What ``sampler.json`` holds for a best-of-n sampler."""
    best_of_n_kl_bound(n)  # validates n
    return {"type": "best_of_n", "base": base, "reward": reward, "n": n}


def is_sampler(name: str | Path) -> bool:
    """Whether ``name`` is a folder (or file) holding a sampler described rather than a policy."""
    path = Path(name)
    return (path / SAMPLER_FILE).is_file() or (path.name == SAMPLER_FILE and path.is_file())


def load_sampler(name: str | Path, base_name: str, reward_loader: Callable[[str], Callable], loader: Loader = Loader()):
    """The sampler stored at ``name``: a folder with ``sampler.json`` (best-of-n), or a policy folder
    (with an optional control-token prefix in ``rlhflab_sampling.json``), its models loaded by ``loader``.
    Returns (sampler, info)."""
    path = Path(name)
    described_path = path / SAMPLER_FILE if path.is_dir() else path
    if is_sampler(path):
        described = read_json(described_path)
        if not isinstance(described, dict) or described.get("type") != "best_of_n":
            kind = described.get("type") if isinstance(described, dict) else type(described).__name__
            raise RlhflabError(f"{described_path}: unknown sampler type {kind!r}")
        if not isinstance(described.get("base"), str) or not isinstance(described.get("reward"), str):
            raise RlhflabError(f"{described_path}: 'base' and 'reward' must be strings")
        n = described.get("n")
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_N:
            shown = repr(n) if len(repr(n)) <= 40 else repr(n)[:37] + "..."
            raise DataError(described_path, f"'n' must be an integer in [1, {MAX_N}], got {shown}")
        base, tokenizer = loader.policy(described["base"])
        return BestOfNSampler(base, tokenizer, reward_loader(described["reward"]), n), {
            "type": "best_of_n",
            "n": n,
            "kl_bound": best_of_n_kl_bound(n),
            "reward": described["reward"],
        }
    policy, tokenizer = loader.policy(name)
    base, _ = loader.policy(base_name)
    prefix, vocab_size = "", None
    if (path / SAMPLING_FILE).is_file():
        sampling = read_json(path / SAMPLING_FILE)
        if not isinstance(sampling, dict):
            raise DataError(path / SAMPLING_FILE, f"expected a JSON object, got {type(sampling).__name__}")
        prefix, vocab_size = sampling.get("prefix", ""), sampling.get("vocab_size")
        if not isinstance(prefix, str) or not (
            vocab_size is None
            or (isinstance(vocab_size, int) and not isinstance(vocab_size, bool) and 0 < vocab_size <= len(tokenizer))
        ):
            raise DataError(
                path / SAMPLING_FILE,
                f"'prefix' must be a string and 'vocab_size' an integer in [1, {len(tokenizer)}] (the tokenizer's size)",
            )
    return PolicySampler(policy, tokenizer, base, prefix, vocab_size), {"type": "policy", "prefix": prefix}
