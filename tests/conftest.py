"""Shared tiny fixtures: a random Llama with a 128-id vocabulary and tokenizers built from it."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from transformers_unicode import UniCodeVisualTokenizer, UniCodeVisualTokenizerConfig

torch.set_num_threads(2)

VOCAB = 128
HIDDEN = 32
SPECIAL_IDS = (0, 1, 2)


def tiny_llm(vocab_size: int = VOCAB, hidden_size: int = HIDDEN, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=1,
        num_attention_heads=2,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    return LlamaForCausalLM(config)


def tiny_tokenizer_config(quantizer: str = "rq", **overrides) -> UniCodeVisualTokenizerConfig:
    values = dict(
        image_size=16,
        latent_size=2,
        patch_size=2,
        block_out_channels=(16, 16, 16) if quantizer != "hq" else (16, 16),
        norm_num_groups=8,
        quantizer=quantizer,
        codes_per_position=4,
    )
    values.update(overrides)
    return UniCodeVisualTokenizerConfig(**values)


def tiny_tokenizer(quantizer: str = "rq", seed: int = 0, **overrides) -> UniCodeVisualTokenizer:
    llm = tiny_llm()
    torch.manual_seed(seed)
    return UniCodeVisualTokenizer.from_llm(llm, tiny_tokenizer_config(quantizer, **overrides))


@pytest.fixture
def llm():
    return tiny_llm()


@pytest.fixture
def pixels():
    torch.manual_seed(1)
    return torch.rand(3, 3, 16, 16) * 2 - 1
