"""UniCode on the embedded default: SmolLM2-135M-Instruct + a Stage I tokenizer, through the Auto classes (slow)."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoProcessor

from transformers_unicode import UniCodeForCausalLM, UniCodeVisualTokenizer, load_llm, load_openmoji
from transformers_unicode.training.stage1 import TokenizerTrainingArguments

pytestmark = pytest.mark.slow

# SmolLM2 as shipped, with a smaller image geometry than the quickstart's (32 px, 4 x 4 positions, D = 2):
# what these tests prove does not depend on it, and a drawing is then 32 decoding steps, not 256.
SMALL_GEOMETRY = {"image_size": 32, "latent_size": 4, "codes_per_position": 2}


def test_assemble_save_reload_caption_and_draw(tmp_path):
    llm, llm_tokenizer = load_llm("embedded")
    visual = UniCodeVisualTokenizer.from_llm(
        llm, TokenizerTrainingArguments(**SMALL_GEOMETRY).tokenizer_config(), tokenizer=llm_tokenizer
    )
    model, processor = UniCodeForCausalLM.from_llm(
        llm, visual, tokenizer=llm_tokenizer, training_datasets=["openmoji"], return_processor=True
    )
    assert len(processor.tokenizer) == 49152 + 3 and model.config.image_generation_length == 4 * 4 * 2
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    del model, llm
    model = AutoModelForCausalLM.from_pretrained(tmp_path)
    processor = AutoProcessor.from_pretrained(tmp_path)
    assert type(model).__name__ == "UniCodeForCausalLM"
    card = (tmp_path / "README.md").read_text()
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in card and "OpenMoji" in card

    emoji = load_openmoji("test", size=32, limit=1)[0]
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is this?"}]}]
    prompt = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    inputs = processor(images=emoji["image"], text=prompt, return_tensors="pt")
    assert int(inputs["image_span_mask"].sum()) == 4 * 4
    # Before Stage II SmolLM2 has never read an image, so what it says is not a caption yet (it writes
    # newlines); this checks the path: ids in, new text tokens out, decoded without the image span.
    output = model.generate(**inputs, min_new_tokens=4, max_new_tokens=8, do_sample=False)
    new_tokens = output[0, inputs["input_ids"].shape[1] :]
    assert 4 <= new_tokens.numel() <= 8 and bool((new_tokens < len(processor.tokenizer)).all())
    assert isinstance(processor.decode(new_tokens), str)

    torch.manual_seed(0)
    prompt = processor.apply_chat_template(
        [{"role": "user", "content": "Draw a red apple."}], tokenize=False, add_generation_prompt=True
    )
    ids = model.generate(
        **processor(text=prompt, return_tensors="pt"), generation_mode="image", guidance_scale=2.0
    )
    images = processor.decode_images(ids)
    assert len(images) == 1 and images[0].size == (32, 32)


def test_stage2_cli_on_the_embedded_default(tmp_path, capsys):
    """`transformers-unicode sft` from a Stage I tokenizer folder: assemble with SmolLM2, LoRA, evaluate."""
    import json

    from transformers_unicode.cli import main

    llm, llm_tokenizer = load_llm("embedded")
    visual = UniCodeVisualTokenizer.from_llm(
        llm, TokenizerTrainingArguments(**SMALL_GEOMETRY).tokenizer_config(), tokenizer=llm_tokenizer
    )
    visual.save_pretrained(tmp_path / "tokenizer")
    del llm
    out = tmp_path / "sft"
    flags = [
        "sft",
        "--model_name_or_path",
        str(tmp_path / "tokenizer"),
        "--output_dir",
        str(out),
        "--max_steps",
        "2",
        "--per_device_train_batch_size",
        "2",
        "--num_samples",
        "4",
        "--train_limit",
        "8",
        "--eval_limit",
        "2",
        "--eval_draw_limit",
        "1",
        "--use_peft",
        "--lora_r",
        "4",
        "--activation_checkpointing",
        "false",
        "--max_length",
        "None",
        "--report_to",
        "none",
        "--save_strategy",
        "no",
        "--disable_tqdm",
        "true",
    ]
    assert main(flags) == 0
    results = json.loads((out / "sft_results.json").read_text())
    assert {"before", "after", "train"} <= set(results)
    assert 0 <= results["after"]["held_out_group"]["accuracy"] <= 1
    assert results["after"]["text_to_image"]["count"] == 1
    assert '"held_out_group"' in capsys.readouterr().out
    model = AutoModelForCausalLM.from_pretrained(out)
    assert (
        type(model).__name__ == "UniCodeForCausalLM" and (out / "adapter" / "adapter_config.json").is_file()
    )
