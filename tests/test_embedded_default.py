"""The embedded default: SmolLM2-135M-Instruct's table as the codebook, OpenMoji images (slow)."""

import pytest
import torch

from transformers_unicode import (
    UniCodeVisualTokenizer,
    load_llm,
    load_openmoji,
)
from transformers_unicode.training.stage1 import TokenizerTrainingArguments, images_to_pixels

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2():
    return load_llm("embedded")


def test_smollm2_table_is_the_unified_codebook(smollm2):
    llm, tokenizer = smollm2
    table = llm.get_input_embeddings().weight
    assert tuple(table.shape) == (49152, 576)
    visual = UniCodeVisualTokenizer.from_llm(
        llm, TokenizerTrainingArguments().tokenizer_config(), tokenizer=tokenizer
    )
    ids = visual.codebook.visual_ids
    special = {i for i, t in tokenizer.added_tokens_decoder.items() if t.special} | set(
        tokenizer.all_special_ids
    )
    assert ids.numel() == 2048 and not set(ids.tolist()) & special and min(ids.tolist()) > max(special)
    assert torch.equal(visual.codebook.embedding, table[ids].float())
    # codes are SmolLM2 token ids: they detokenize to ordinary vocabulary pieces
    images = load_openmoji("test", size=64, limit=4)
    codes = visual.eval().encode(images_to_pixels(images["image"], 64)).codes
    assert codes.shape == (4, 8, 8, 4)
    assert set(codes.unique().tolist()) <= set(ids.tolist())
    assert all(isinstance(piece, str) for piece in tokenizer.convert_ids_to_tokens(codes[0, 0, 0].tolist()))


def test_a_few_training_steps_on_openmoji(smollm2):
    llm, _ = smollm2
    visual = UniCodeVisualTokenizer.from_llm(
        llm, TokenizerTrainingArguments(dead_code_threshold=1.0).tokenizer_config()
    )
    pixels = images_to_pixels(load_openmoji("train", size=64, limit=16)["image"], 64)
    optimizer = torch.optim.AdamW(visual.parameters(), lr=2e-3)
    losses = []
    for _ in range(8):
        loss = visual(pixels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]


def test_the_cached_conversion_is_transformers_own_gguf_load(smollm2):
    """`load_llm` reads GGUF through transformers once, then from its cache: the same tensors, tokenizer and
    chat template as transformers' own GGUF loader gives, and the GGUF's folder still named as the origin."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from transformers_unicode import embedded_llm_location
    from transformers_unicode.modeling.llm_utils import gguf_cache_folder

    llm, tokenizer = smollm2
    folder, gguf_file = embedded_llm_location()
    assert gguf_cache_folder(folder, gguf_file) is not None
    reference = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file, dtype=torch.float32)
    reference_tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
    ours, theirs = llm.state_dict(), reference.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert llm.lm_head.weight.data_ptr() == llm.get_input_embeddings().weight.data_ptr()  # still tied
    assert llm.name_or_path == reference.name_or_path == folder
    text = "<|im_start|>user\nDraw a red apple 🍎, s'il vous plaît.<|im_end|>"
    assert tokenizer(text)["input_ids"] == reference_tokenizer(text)["input_ids"]
    turn = [{"role": "user", "content": "hi"}]
    assert tokenizer.apply_chat_template(turn, tokenize=False, add_generation_prompt=True) == (
        reference_tokenizer.apply_chat_template(turn, tokenize=False, add_generation_prompt=True)
    )
    assert llm.generation_config.to_diff_dict() == reference.generation_config.to_diff_dict()
