"""The depth head (`UniCodeConfig(image_head="depth")`): one LLM step per image position, D depth-head steps.

Tiny random Llama backbones (conftest's `tiny_unicode`): a 2x2 code map with D = 4 codes per position, so a
written image is 16 code ids, 4 LLM positions.
"""

import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_sft, tiny_unicode
from trl import ModelConfig

from transformers_unicode import (
    PACKED_CODE_OFFSET,
    UniCodeConfig,
    UniCodeForCausalLM,
    UniCodeProcessor,
    UniCodeTextToImagePipeline,
)
from transformers_unicode.training.collator import UniCodeDataCollator
from transformers_unicode.training.sft_data import decompression_sample, encode_conversation

P = PACKED_CODE_OFFSET
PROMPTS = ["a red apple", "draw a blue car"]


@pytest.fixture(scope="module")
def depth():
    return tiny_unicode(image_head="depth")


def known_codes(processor):
    """A hand-built (2, 2, 4) code map of visual ids: position p holds visual ids 4p+1 .. 4p+4."""
    visual_ids = processor.visual_tokenizer.codebook.visual_ids
    return visual_ids[torch.arange(1, 17)].view(2, 2, 4)


def drawing_sample(processor, codes, image_head="depth"):
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "draw a red apple"}]},
        {"role": "assistant", "content": [{"type": "image"}]},
    ]
    return encode_conversation(messages, [codes], processor, image_head=image_head)


# ---- configuration -------------------------------------------------------------------------------------
def test_flat_stays_the_default_and_depth_is_validated(depth):
    flat, _ = tiny_unicode()
    assert flat.config.image_head == "flat" and flat.depth_head is None
    assert flat.config.image_llm_steps == flat.config.image_generation_length == 16
    model, _ = depth
    assert model.config.image_llm_steps == model.config.image_seq_length == 4
    assert model.config.image_generation_length == 16  # it still writes h*w*D ids
    with pytest.raises(ValueError, match="image_head"):
        UniCodeConfig(visual_config=model.config.visual_config.to_dict(), image_head="tree")
    with pytest.raises(ValueError, match="depth_num_layers"):
        UniCodeConfig(visual_config=model.config.visual_config.to_dict(), depth_num_layers=0)
    with pytest.raises(ValueError, match="image_head"):
        UniCodeDataCollator(pad_token_id=0, image_head="tree")


# ---- data and labels -----------------------------------------------------------------------------------
def test_a_written_image_is_its_packed_positions_and_they_are_the_targets(depth):
    _, processor = depth
    codes = known_codes(processor)
    packed = processor.visual_tokenizer.pack_codes(codes.view(4, 4)).tolist()
    flat = drawing_sample(processor, codes, image_head="flat")
    sample = drawing_sample(processor, codes)
    tokenizer = processor.tokenizer
    ((begin, end),) = tokenizer.find_image_spans(sample["input_ids"])
    assert sample["input_ids"][begin:end] == packed  # h*w positions, read with the same F
    assert len(flat["input_ids"]) - len(sample["input_ids"]) == 16 - 4
    labels = UniCodeDataCollator(pad_token_id=0, image_head="depth")([sample])["labels"][0].tolist()
    assert labels[begin:end] == packed and labels[begin - 1] == tokenizer.image_start_token_id
    # The flat collator never takes a packed id as a target (its rule 2 is unchanged).
    flat_labels = UniCodeDataCollator(pad_token_id=0)([sample])["labels"][0].tolist()
    assert flat_labels[begin:end] == [-100] * 4


def test_depth_collator_keeps_read_images_out_of_the_targets():
    ids = [9, P + 1, 8, 9, P + 1, 8, 5]  # a read part, then the same part written (decompression)
    mask = [0, 0, 0, 1, 1, 1, 1]
    labels = UniCodeDataCollator(pad_token_id=0, image_head="depth")(
        [{"input_ids": ids, "assistant_masks": mask}]
    )
    assert labels["labels"][0].tolist() == [-100, -100, -100, 9, P + 1, 8, 5]
    no_mask = UniCodeDataCollator(pad_token_id=0, image_head="depth")([{"input_ids": ids}])
    assert no_mask["labels"][0].tolist() == [
        9,
        -100,
        8,
        9,
        -100,
        8,
        5,
    ]  # without answers, every image is read


def test_decompression_keeps_its_meaning_with_the_depth_head(depth):
    _, processor = depth
    codes = known_codes(processor)
    sample = decompression_sample(codes, num_segments=2, processor=processor, image_head="depth")
    ids, mask = sample["input_ids"], sample["assistant_masks"]
    spans = processor.tokenizer.find_image_spans(ids)
    pack = processor.visual_tokenizer.pack_codes
    positions = codes.view(4, 4)
    for part, rows in enumerate((positions[:2], positions[2:])):
        (read_begin, read_end), (write_begin, write_end) = spans[2 * part], spans[2 * part + 1]
        assert ids[read_begin:read_end] == ids[write_begin:write_end] == pack(rows).tolist()
        assert set(mask[read_begin:read_end]) == {0} and set(mask[write_begin:write_end]) == {1}
    labels = UniCodeDataCollator(pad_token_id=0, image_head="depth")([sample])["labels"][0]
    written = labels[labels >= P]
    # The targets are the D codes of every position, in raster order (Eq. 4-5).
    assert torch.equal(processor.visual_tokenizer.unpack_codes(written), positions)


# ---- the loss --------------------------------------------------------------------------------------------
def test_depth_loss_equals_a_hand_computation(depth):
    model, processor = depth
    codes = known_codes(processor)
    batch = UniCodeDataCollator(pad_token_id=0, image_head="depth")([drawing_sample(processor, codes)])
    ids, labels = batch["input_ids"], batch["labels"]
    with torch.no_grad():
        loss = model(**batch).loss
        hidden = model.model(input_ids=ids).last_hidden_state[0]  # (L, c)
        table, head, lm_head = model.get_input_embeddings().weight, model.depth_head, model.lm_head
        visual_ids = model.visual_tokenizer.codebook.visual_ids
        terms = []
        for t in range(1, ids.shape[1]):
            target = int(labels[0, t])
            if target == -100:
                continue
            if target < P:  # text (and the markers): the LM head on the state before it
                terms.append(F.cross_entropy(lm_head(hidden[t - 1]), torch.tensor(target), reduction="sum"))
                continue
            position_codes = model.visual_tokenizer.unpack_codes(torch.tensor(target))  # (D,)
            # By hand: depth input 0 is the projected LLM state, input d the LLM row of code d, plus the depth
            # vector; a causal Llama over them; the LM head's rows of the visual ids score output d against code
            # d + 1 (a softmax over the codes).
            inputs = torch.stack([head.input_projection(hidden[t - 1]), *table[position_codes[:-1]]])
            inputs = inputs + head.transformer.embed_tokens.weight
            outputs = head.transformer(inputs_embeds=inputs[None]).last_hidden_state[0]  # (D, c)
            for d in range(4):
                code_logits = lm_head.weight[visual_ids] @ outputs[d]  # (K,)
                index = (visual_ids == position_codes[d]).nonzero().squeeze()
                terms.append(F.cross_entropy(code_logits, index, reduction="sum"))
        text_targets = int(((labels[0, 1:] != -100) & (labels[0, 1:] < P)).sum())
        assert len(terms) == text_targets + 16  # 4 positions x D = 4 codes
        torch.testing.assert_close(loss, torch.stack(terms).sum() / len(terms))
        # The training path (no logits) and gradient accumulation's sum over num_items_in_batch agree.
        model.train()
        try:
            fast = model(**batch)
            assert fast.logits is None
            torch.testing.assert_close(fast.loss, loss)
            torch.testing.assert_close(model(**batch, num_items_in_batch=7).loss, loss * len(terms) / 7)
        finally:
            model.eval()


def test_depth_loss_trains_the_head_and_a_batch_without_images_reaches_every_parameter(depth):
    model, processor = depth
    drawing = UniCodeDataCollator(pad_token_id=0, image_head="depth")(
        [drawing_sample(processor, known_codes(processor))]
    )
    text_only = {"input_ids": torch.tensor([[5, 6, 7, 8]]), "labels": torch.tensor([[5, 6, 7, 8]])}
    model.train()
    try:
        for batch in (drawing, text_only):
            model.zero_grad()
            model(**batch).loss.backward()
            grads = [p.grad for p in model.depth_head.parameters()]
            assert all(g is not None for g in grads)  # DDP needs every parameter in the graph
            if batch is drawing:
                assert all(bool(g.abs().sum() > 0) for g in grads)
    finally:
        model.zero_grad()
        model.eval()


# ---- generation ------------------------------------------------------------------------------------------
def count_llm_forwards(model):
    calls = []
    forward = model.model.language_model.forward

    def counted(*args, **kwargs):
        calls.append(1)
        return forward(*args, **kwargs)

    return calls, counted


def test_depth_generation_writes_exactly_hwD_codes_in_hw_llm_steps(depth, monkeypatch):
    flat_model, _ = tiny_unicode()
    model, processor = depth
    inputs = processor(text=PROMPTS, return_tensors="pt")
    tokenizer, length = processor.tokenizer, model.config.image_generation_length
    counts = {}
    for name, m in (("flat", flat_model), ("depth", model)):
        for scale in (None, 3.0):
            calls, counted = count_llm_forwards(m)
            monkeypatch.setattr(m.model.language_model, "forward", counted)
            torch.manual_seed(0)
            output = m.generate(**inputs, generation_mode="image", guidance_scale=scale)
            monkeypatch.undo()
            counts[name, scale] = len(calls)
            for row in output:
                spans = tokenizer.find_image_spans(row)
                assert [end - begin for begin, end in spans] == [length]
                assert bool(
                    torch.isin(row[spans[0][0] : spans[0][1]], m.visual_tokenizer.codebook.visual_ids).all()
                )
                assert row[-1] == tokenizer.image_end_token_id
    # Prefill + one step per written id (flat) or per position (depth); CFG runs both branches.
    assert counts["flat", None] == 16 + 1 and counts["depth", None] == 4 + 1
    assert counts["flat", 3.0] == 2 * (16 + 1) and counts["depth", 3.0] == 2 * (4 + 1)
    images = processor.decode_images(output)
    size = model.config.visual_config.image_size
    assert [im.size for im in images] == [(size, size)] * 2


@pytest.mark.parametrize(
    "architecture, quantizer",
    [("llama", "rq"), ("gpt2", "rq"), ("llama", "mcq"), ("llama", "hq"), ("llama", "vq")],
)
def test_greedy_depth_generation_follows_the_trained_distribution(architecture, quantizer):
    """Each code that greedy generation writes is the argmax of the training path's depth-head logits, for any
    backbone and any D (VQ: 1, MCQ: 2, RQ: 4, HQ: 5)."""
    overrides = {"codes_per_position": 2} if quantizer == "mcq" else {}
    model, processor = tiny_unicode(architecture, quantizer=quantizer, image_head="depth", **overrides)
    depth, positions = model.config.visual_config.codes_per_position, model.config.image_seq_length
    inputs = processor(text=PROMPTS[:1], return_tensors="pt")
    output = model.generate(**inputs, generation_mode="image", do_sample=False)
    ((begin, end),) = processor.tokenizer.find_image_spans(output[0])
    codes = output[0, begin:end].view(positions, depth)  # (h*w, D)
    packed = model.visual_tokenizer.pack_codes(codes)
    ids = torch.cat([output[0, :begin], packed, output[0, end:]])[None]
    with torch.no_grad():
        hidden = model.model(input_ids=ids).last_hidden_state[0]
        before = hidden[begin - 1 : begin - 1 + positions]  # the state before each position
        outputs = model.depth_head(before, model.get_input_embeddings()(codes[:, :-1]))
        logits = F.linear(outputs, *model.code_head())  # (h*w, D, K)
    assert torch.equal(model.visual_tokenizer.codebook.visual_ids[logits.argmax(-1)], codes)


def test_depth_generation_is_seeded_and_guidance_one_is_no_guidance(depth):
    model, processor = depth
    inputs = processor(text=PROMPTS, return_tensors="pt")

    def run(**kwargs):
        torch.manual_seed(3)
        return model.generate(**inputs, generation_mode="image", **kwargs)

    plain = run()
    assert torch.equal(plain, run())
    assert torch.equal(plain, run(guidance_scale=1.0))
    assert not torch.equal(plain, run(guidance_scale=3.0))
    torch.manual_seed(4)
    assert not torch.equal(plain, model.generate(**inputs, generation_mode="image"))


def test_depth_generation_refuses_beams_and_no_cache(depth):
    model, processor = depth
    inputs = processor(text=PROMPTS[:1], return_tensors="pt")
    with pytest.raises(ValueError, match="num_beams"):
        model.generate(**inputs, generation_mode="image", num_beams=2)
    with pytest.raises(ValueError, match="cache"):
        model.generate(**inputs, generation_mode="image", use_cache=False)
    assert not model._writing_image  # left off after a refusal
    text = model.generate(**inputs, max_new_tokens=3, do_sample=False)  # text mode is the plain LLM
    assert text.shape[1] == inputs["input_ids"].shape[1] + 3


def test_text_to_image_pipeline_with_the_depth_head(depth):
    model, processor = depth
    pipe = UniCodeTextToImagePipeline(model=model, processor=processor)
    first = pipe("a red apple", generator=torch.Generator().manual_seed(0)).images
    again = pipe("a red apple", generator=torch.Generator().manual_seed(0)).images
    size = model.config.visual_config.image_size
    assert [im.size for im in first] == [(size, size)]
    assert list(first[0].getdata()) == list(again[0].getdata())


# ---- saving ------------------------------------------------------------------------------------------------
REMOTE_CODE = """
import sys
sys.modules["transformers_unicode"] = None  # not importable: everything must come from the folder
import torch
from transformers import AutoModelForCausalLM, AutoProcessor
folder = sys.argv[1]
model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)
processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
torch.manual_seed(0)
ids = model.generate(**processor(text="a car", return_tensors="pt"), generation_mode="image")
torch.save(ids, sys.argv[2])
print(type(model).__module__, model.config.image_head, processor.decode_images(ids)[0].size)
"""


def test_depth_model_saves_loads_and_runs_as_remote_code(depth, tmp_path):
    model, processor = depth
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    reloaded = UniCodeForCausalLM.from_pretrained(tmp_path)
    assert reloaded.config.image_head == "depth" and reloaded.config.depth_num_layers == 1
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, reloaded.state_dict()[name]), name
    inputs = UniCodeProcessor.from_pretrained(tmp_path)(text="a car", return_tensors="pt")
    torch.manual_seed(0)
    expected = model.generate(**inputs, generation_mode="image")
    torch.manual_seed(0)
    assert torch.equal(reloaded.generate(**inputs, generation_mode="image"), expected)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    ids_file = tmp_path / "ids.pt"
    result = subprocess.run(
        [sys.executable, "-c", REMOTE_CODE, str(tmp_path), str(ids_file)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "transformers_modules" in result.stdout and "depth (16, 16)" in result.stdout
    assert torch.equal(torch.load(ids_file), expected)


def test_the_space_draws_with_a_depth_model_folder(depth, tmp_path):
    """The Space takes no flag: the folder's config names the head, and its text-to-image tab draws with it."""
    from transformers_unicode.space import UniCodeSpace

    model, processor = depth
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    space = UniCodeSpace(tmp_path, device="cpu", display_size=64)
    assert space.model.config.image_head == "depth"
    reports = []

    def progress(value, **kwargs):
        reports.append(value)

    image = space.text_to_image("a red apple", guidance_scale=3.0, seed=7, progress=progress)
    assert image.size == (64, 64)
    assert reports[-1] == (16, 16)  # the progress counts the h*w*D image ids, as for the flat head
    again = space.text_to_image("a red apple", guidance_scale=3.0, seed=7, progress=progress)
    assert list(image.getdata()) == list(again.getdata())


# ---- Stage II ----------------------------------------------------------------------------------------------
def test_stage2_trains_the_depth_head_through_sfttrainer(tmp_path):
    model, processor = tiny_unicode(image_head="depth")
    head_before = {k: v.clone() for k, v in model.depth_head.state_dict().items()}
    results, trainer = tiny_sft(tmp_path, unicode=(model, processor))
    curve = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(curve) == 4 and all(torch.isfinite(torch.tensor(curve)))
    changed = [k for k, v in model.depth_head.state_dict().items() if not torch.equal(v, head_before[k])]
    assert "input_projection.weight" in changed
    samples = trainer.train_dataset
    written = [
        ids
        for ids, task in zip(samples["input_ids"], samples["task"], strict=True)
        if task == "text_to_image"
    ]
    assert written and all(sum(i >= P for i in ids) == 4 for ids in written)  # h*w positions, not h*w*D ids
    reloaded = UniCodeForCausalLM.from_pretrained(tmp_path)
    torch.testing.assert_close(reloaded.depth_head.state_dict(), model.depth_head.state_dict())
    # Gradient accumulation's count: a written position is its D codes, as in the model's loss.
    collate = UniCodeDataCollator(pad_token_id=0, image_head="depth")
    batch = collate([drawing_sample(processor, known_codes(processor))])
    labels = batch["labels"][0, 1:]
    text = int(((labels != -100) & (labels < P)).sum())
    assert int(trainer._get_num_items_in_batch([batch, batch], torch.device("cpu"))) == 2 * (text + 4 * 4)


def test_stage2_lora_trains_the_whole_depth_head(tmp_path):
    """As the quickstart trains: LoRA, micro-batches accumulated, activation checkpointing."""
    model, processor = tiny_unicode(image_head="depth")
    head_before = {k: v.clone() for k, v in model.depth_head.state_dict().items()}
    _, trainer = tiny_sft(
        tmp_path,
        unicode=(model, processor),
        model_args=ModelConfig(use_peft=True, lora_r=4, lora_alpha=8),
        max_steps=2,
        per_device_train_batch_size=2,
        gradient_accumulation_steps=2,
        activation_checkpointing=True,
    )
    curve = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(curve) == 2 and all(torch.isfinite(torch.tensor(curve)))
    reloaded = UniCodeForCausalLM.from_pretrained(tmp_path)  # the merged model
    moved = [k for k, v in reloaded.depth_head.state_dict().items() if not torch.equal(v, head_before[k])]
    assert "input_projection.weight" in moved


def test_quickstart_takes_the_image_head_as_a_flag():
    from transformers import HfArgumentParser

    from transformers_unicode.training.quickstart import QuickstartArguments

    (arguments,) = HfArgumentParser(QuickstartArguments).parse_args_into_dataclasses(["--image_head", "flat"])
    assert arguments.image_head == "flat"  # UniCode's layout, on request
    assert QuickstartArguments().image_head == "depth"  # the default the measurements chose (README)
    with pytest.raises(ValueError, match="image_head"):
        QuickstartArguments(image_head="tree")


def test_the_depth_head_can_train_at_its_own_learning_rate(tmp_path):
    """`depth_head_learning_rate`: the head's parameters sit in optimizer groups of that rate (and keep the ratio
    through the schedule); every other parameter keeps the run's rate; a flat model refuses the option."""
    _, trainer = tiny_sft(
        tmp_path / "depth",
        unicode=tiny_unicode(image_head="depth"),
        script={"depth_head_learning_rate": 1e-2, "mixture": "text_to_image=1"},
        max_steps=2,
        learning_rate=1e-3,
        lr_scheduler_type="constant",
    )
    head = {id(p) for p in trainer.model.depth_head.parameters()}
    groups = trainer.optimizer.param_groups
    for group in groups:
        in_head = {id(p) in head for p in group["params"]}
        assert len(in_head) == 1  # a group is all head or no head
        assert group["lr"] == pytest.approx(1e-2 if in_head.pop() else 1e-3)
    assert sum(len(g["params"]) for g in groups) == sum(
        1 for p in trainer.model.parameters() if p.requires_grad
    )
    with pytest.raises(ValueError, match="needs a model with the depth head"):
        tiny_sft(tmp_path / "flat", script={"depth_head_learning_rate": 1e-2}, max_steps=1)
