"""UniCodeTokenizer and UniCodeProcessor: markers, the code map <-> id span map, batching, chat template."""

import re

import pytest
import torch
from conftest import UNUSABLE_IMAGE_KINDS, tiny_text_tokenizer, tiny_unicode, unusable_image_files
from PIL import Image

from transformers_unicode import PACKED_CODE_OFFSET, UniCodeTokenizer
from transformers_unicode.processing import tokenization_unicode


@pytest.fixture(scope="module")
def unicode():
    return tiny_unicode("llama")


def test_markers_are_added_once_and_codes_need_no_new_vocabulary():
    base = tiny_text_tokenizer()
    tokenizer = UniCodeTokenizer.from_llm_tokenizer(base)
    assert len(base) == 128 and len(tokenizer) == 131  # the input tokenizer is not modified
    ids = tokenizer("<image>a red apple")["input_ids"]
    assert ids[0] == tokenizer.image_token_id and ids[1:] == base("a red apple")["input_ids"]
    assert tokenizer.padding_side == "left"
    # Tokenizer files stand alone (trust_remote_code) and repeat the packing offset: they must agree.
    assert tokenization_unicode.PACKED_CODE_OFFSET == PACKED_CODE_OFFSET


def test_code_map_and_id_span_round_trip():
    tokenizer = UniCodeTokenizer.from_llm_tokenizer(tiny_text_tokenizer())
    codes = torch.randint(3, 128, (2, 2, 4))
    span = tokenizer.code_map_to_ids(codes)
    assert span[0] == tokenizer.image_start_token_id and span[-1] == tokenizer.image_end_token_id
    assert span[1:5] == codes[0, 0].tolist()  # a position's D codes are consecutive, raster order
    assert torch.equal(tokenizer.ids_to_code_map(span[1:-1], latent_size=2, codes_per_position=4), codes)
    assert tokenizer.find_image_spans([7, *span, 8, *span]) == [(2, 18), (21, 37)]
    with pytest.raises(ValueError, match="closes no image span"):
        tokenizer.find_image_spans([7, tokenizer.image_end_token_id])


def test_decode_leaves_image_spans_out(unicode):
    _, processor = unicode
    ids = processor(images=Image.new("RGB", (16, 16), "red"), text="<image>a red apple")["input_ids"]
    assert processor.decode(ids) == "a red apple"
    written = processor.tokenizer.code_map_to_ids(torch.full((2, 2, 4), 40))
    assert processor.decode(processor.tokenizer("draw")["input_ids"] + written) == "draw"


def test_batches_are_left_padded_and_images_follow_their_markers(unicode):
    model, processor = unicode
    red, blue = Image.new("RGB", (16, 16), "red"), Image.new("RGB", (16, 16), "blue")
    batch = processor(
        images=[[red], [red, blue]], text=["<image>a cat", "<image> and <image>"], return_tensors="pt"
    )
    assert batch["input_ids"].shape[0] == 2
    assert batch["attention_mask"][0, 0] == 0 and batch["attention_mask"][1].all()  # left padding
    flat = processor(
        images=[red, red, blue], text=["<image>a cat", "<image> and <image>"], return_tensors="pt"
    )
    assert torch.equal(batch["input_ids"], flat["input_ids"])
    assert [len(processor.tokenizer.find_image_spans(row)) for row in batch["input_ids"]] == [1, 2]
    alone = processor(images=[red, blue], return_tensors="pt")  # no text: one sample per image
    assert alone["image_span_mask"].sum(dim=1).tolist() == [model.config.image_seq_length] * 2


def test_chat_template_has_image_slots(unicode):
    _, processor = unicode
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "which group?"}]},
        {"role": "assistant", "content": "animals"},
    ]
    text = processor.apply_chat_template(messages, tokenize=False)
    assert (
        text == "<|im_start|>user\n<image>which group?<|im_end|>\n<|im_start|>assistant\nanimals<|im_end|>\n"
    )
    prompt = processor.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>assistant\n")


# ---- bad input through the Python API: a ValueError that names the problem, never PIL's or numpy's ---------
RED = Image.new("RGB", (16, 16), (220, 30, 30))


def _span(unicode, ids):
    tokenizer = unicode[1].tokenizer
    return torch.tensor([[tokenizer.image_start_token_id, *ids, tokenizer.image_end_token_id]])


def _written_length(unicode):
    return unicode[1].image_seq_length * unicode[0].config.visual_config.codes_per_position


API_MISUSES = {
    "two <image> markers, one image": (
        lambda u: u[1](images=[RED], text="<image><image> hi"),
        "2 <image> marker",
    ),
    "one <image> marker, two images": (lambda u: u[1](images=[RED, RED], text="<image> hi"), "2 image(s)"),
    "an image and no marker": (lambda u: u[1](images=[RED], text="hi"), "0 <image> marker"),
    "an empty prompt": (lambda u: u[1](text=""), "Prompt 0 is empty"),
    "a 100,000-character prompt into the model": (
        lambda u: u[0](**u[1](text="a " * 50_000, return_tensors="pt")),
        "over the language model's 2048",
    ),
    "ids above the vocabulary to decode_images": (
        lambda u: u[1].decode_images(_span(u, [10**9] * _written_length(u))),
        "outside the vocabulary",
    ),
    "negative ids to decode_images": (
        lambda u: u[1].decode_images(_span(u, [-3] * _written_length(u))),
        "outside the vocabulary",
    ),
    "a span cut short to decode_images": (lambda u: u[1].decode_images(_span(u, [5, 6, 7])), "cut short"),
}


@pytest.mark.parametrize("misuse", list(API_MISUSES))
def test_api_misuse_is_a_value_error_naming_the_problem(unicode, misuse):
    call, message = API_MISUSES[misuse]
    with pytest.raises(ValueError, match=re.escape(message)) as excinfo:
        call(unicode)
    assert excinfo.value.__cause__ is None


@pytest.mark.parametrize("kind", UNUSABLE_IMAGE_KINDS)
def test_unusable_image_files_are_a_value_error_from_the_processor(unicode, tmp_path, kind):
    path, message = unusable_image_files(tmp_path)[kind]
    with pytest.raises(ValueError, match=re.escape(message)) as excinfo:
        unicode[1](images=[str(path)], text="<image> what is this?")
    assert excinfo.value.__cause__ is None


def test_a_long_prompt_is_truncated_when_asked(unicode):
    model, processor = unicode
    inputs = processor(text="a " * 50_000, truncation=True, max_length=64, return_tensors="pt")
    assert inputs["input_ids"].shape == (1, 64)
    assert model(**inputs).logits.shape[1] == 64
