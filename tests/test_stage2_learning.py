"""Stage II can learn: the answer's gradient reaches the rows an image is read through (fast, tiny model), and
the shipped path memorises a small set of group answers and drawings on the embedded default (slow)."""

import pytest
import torch
from conftest import tiny_unicode

from transformers_unicode import load_openmoji
from transformers_unicode.data.openmoji_conversations import openmoji_conversations
from transformers_unicode.training.collator import UniCodeDataCollator
from transformers_unicode.training.sft_data import tokenize_conversations


def test_answer_loss_gradient_reaches_the_rows_the_image_is_read_through():
    model, processor = tiny_unicode()
    embedding = model.get_input_embeddings().weight
    assert model.get_output_embeddings().weight is not embedding  # untied: rows get gradient only as inputs
    images = load_openmoji("train", size=16, limit=1)
    samples = tokenize_conversations(openmoji_conversations("group", images=images), processor, task="group")
    batch = UniCodeDataCollator.from_processor(processor)(list(samples))
    read = processor.encode_images(list(images["image"]))[0].flatten().unique()  # the image's D*h*w code ids

    model.train()
    loss = model(**batch).loss  # training mode: the supervised-positions loss TRL's trainer calls
    loss.backward()
    row_norms = embedding.grad.norm(dim=-1)
    assert bool((row_norms[read] > 0).all()), (
        "an answer's loss must move every code row the image was read through"
    )
    visual = model.visual_tokenizer.codebook.visual_ids
    untouched = visual[~torch.isin(visual, read)]
    text = torch.as_tensor(batch["input_ids"][batch["input_ids"] < embedding.shape[0]]).unique()
    untouched = untouched[~torch.isin(untouched, text)]
    assert float(row_norms[untouched].abs().max()) == 0.0  # and no other visual row: the read path is exact


def test_rank_choices_matches_the_log_likelihood_of_each_whole_answer():
    """The cached ranking equals scoring each (prompt, answer) sequence on its own, answer tokens summed."""
    from transformers_unicode.evaluation.stage2 import _choice_suffixes, choice_log_likelihoods, rank_choices

    model, processor = tiny_unicode()
    model.eval()
    images = load_openmoji("train", size=16, limit=3)
    conversations = openmoji_conversations("caption", images=images)
    choices = ["a red apple", "cat", "the blue car sat"]
    scores = choice_log_likelihoods(model, processor, conversations, choices, batch_size=2)

    expected = []
    for record in conversations:
        prompt = processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": record["messages"][0]["content"][1]["text"]}]}],
            add_generation_prompt=True, tokenize=False,
        )  # fmt: skip
        prompt_ids = processor(images=record["images"], text=prompt, return_tensors="pt")["input_ids"][0]
        row = []
        for suffix in _choice_suffixes(processor, choices):
            ids = torch.cat([prompt_ids, torch.as_tensor(suffix)])[None]
            with torch.no_grad():
                logits = model(input_ids=ids).logits.log_softmax(-1)[0]
            start = prompt_ids.numel()
            row.append(sum(float(logits[start - 1 + i, token]) for i, token in enumerate(suffix)))
        expected.append(row)
    assert torch.allclose(scores, torch.as_tensor(expected), atol=1e-4)
    picked = rank_choices(model, processor, conversations, choices, batch_size=2)
    assert picked == [choices[i] for i in scores.argmax(1).tolist()]


def test_language_perplexity_is_the_exponent_of_the_models_own_mean_loss():
    """The same number for the UniCode model and for the plain LLM inside it, and exp(transformers' own loss)."""
    from transformers_unicode.evaluation.language import language_perplexity, language_text

    model, processor = tiny_unicode()
    tokenizer = processor.tokenizer
    result = language_perplexity(model, tokenizer, max_tokens=256, window=64)
    assert result["tokens"] == 4 * 63 and result["windows"] == 4
    windows = torch.as_tensor(tokenizer(language_text(), add_special_tokens=False)["input_ids"][:256]).view(
        4, 64
    )
    with torch.no_grad():
        loss = model(input_ids=windows, labels=windows).loss  # a mean over the same 4 x 63 targets
    assert result["perplexity"] == pytest.approx(float(loss.exp()), rel=1e-4)
    with pytest.raises(ValueError, match="multiple of window"):
        language_perplexity(model, tokenizer, max_tokens=100, window=64)
