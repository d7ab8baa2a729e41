"""Stage II: samples, label rules, the supervised-only loss, SFTTrainer (full, LoRA, resume, 2 processes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import StopAt, tiny_sft, tiny_unicode
from PIL import Image
from trl import ModelConfig

from transformers_unicode import PACKED_CODE_OFFSET, CodebookSyncCallback
from transformers_unicode.cli import main
from transformers_unicode.data.conversations import InvalidRecordError, conversations_to_dataset
from transformers_unicode.data.openmoji_conversations import (
    emoji_group_names,
    group_question,
    openmoji_conversations,
)
from transformers_unicode.evaluation.stage2 import exact_match_accuracy, text_to_image_quality
from transformers_unicode.training.collator import UniCodeDataCollator
from transformers_unicode.training.sft_data import (
    decompression_sample,
    encode_conversation,
    label_balance_weights,
    mix_datasets,
    mixture_indices,
    tokenize_conversations,
)
from transformers_unicode.training.stage2 import DEFAULT_MIXTURE, parse_mixture, run_sft

HERE = os.path.dirname(__file__)
P = PACKED_CODE_OFFSET


@pytest.fixture(scope="module")
def unicode():
    return tiny_unicode()


# ---- the collator's label rules, on hand-made samples -------------------------------------------
# ids: 9 = <|image_start|>, 8 = <|image_end|> (any ids work: the rules look at masks and packed ids only)
COLLATOR_CASES = {
    "caption: reads an image, answers text": (
        [1, 9, P + 5, P + 7, 8, 20, 21, 30, 31, 5],
        [0, 0, 0, 0, 0, 0, 0, 1, 1, 1],
        [-100, -100, -100, -100, -100, -100, -100, 30, 31, 5],
    ),
    "text-to-image: writes an image": (
        [1, 20, 21, 9, 40, 41, 42, 43, 8, 5],
        [0, 0, 0, 1, 1, 1, 1, 1, 1, 1],
        [-100, -100, -100, 9, 40, 41, 42, 43, 8, 5],
    ),
    "decompression: reads a part, writes its codes, twice": (
        [9, P + 1, 8, 9, 40, 41, 8, 5, 9, P + 2, 8, 9, 42, 43, 8, 5],
        [0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1],
        [-100, -100, -100, 9, 40, 41, 8, 5, -100, -100, -100, 9, 42, 43, 8, 5],
    ),
    "a packed id inside an answer is still never a target": (
        [1, 9, P + 3, 8, 5],
        [0, 1, 1, 1, 1],
        [-100, 9, -100, 8, 5],
    ),
    "no assistant mask: every token but read images": (
        [1, 9, P + 3, 8, 30],
        None,
        [1, 9, -100, 8, 30],
    ),
}


@pytest.mark.parametrize("case", list(COLLATOR_CASES))
def test_collator_label_rules(case):
    ids, mask, expected = COLLATOR_CASES[case]
    example = {"input_ids": ids} if mask is None else {"input_ids": ids, "assistant_masks": mask}
    batch = UniCodeDataCollator(pad_token_id=0)([example])
    assert batch["labels"][0].tolist() == expected
    assert batch["input_ids"][0].tolist() == ids
    assert batch["attention_mask"][0].tolist() == [1] * len(ids)


@pytest.mark.parametrize("side", ["right", "left"])
def test_collator_pads_and_never_trains_on_padding(side):
    collator = UniCodeDataCollator(pad_token_id=0, padding_side=side, pad_to_multiple_of=4)
    batch = collator(
        [
            {"input_ids": [5, 6, 7], "assistant_masks": [0, 1, 1]},
            {"input_ids": [5, 6], "assistant_masks": [1, 1]},
        ]
    )
    assert batch["input_ids"].shape == (2, 4)
    if side == "right":
        assert batch["input_ids"].tolist() == [[5, 6, 7, 0], [5, 6, 0, 0]]
        assert batch["labels"].tolist() == [[-100, 6, 7, -100], [5, 6, -100, -100]]
        assert batch["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 1, 0, 0]]
    else:
        assert batch["input_ids"].tolist() == [[0, 5, 6, 7], [0, 0, 5, 6]]
        assert batch["labels"].tolist() == [[-100, -100, 6, 7], [-100, -100, 5, 6]]


def test_collator_errors_name_the_sample():
    collator = UniCodeDataCollator(pad_token_id=0, max_length=3)
    with pytest.raises(ValueError, match="Sample 1 has no input_ids"):
        collator([{"input_ids": [1]}, {"text": "x"}])
    with pytest.raises(ValueError, match="Sample 0: assistant_masks has 2 entries for 3"):
        collator([{"input_ids": [1, 2, 3], "assistant_masks": [0, 1]}])
    with pytest.raises(ValueError, match="4 tokens, more than max_length=3"):
        collator([{"input_ids": [1, 2, 3, 4]}])
    with pytest.raises(ValueError, match="padding_side"):
        UniCodeDataCollator(pad_token_id=0, padding_side="middle")


# ---- samples -------------------------------------------------------------------------------------
def known_codes(processor):
    """A hand-built (2, 2, 4) code map of visual ids: position p holds visual ids 4p .. 4p+3."""
    visual_ids = processor.visual_tokenizer.codebook.visual_ids
    return visual_ids[torch.arange(16)].view(2, 2, 4)


def test_decompression_sample_against_known_codes(unicode):
    _, processor = unicode
    tokenizer, codes = processor.tokenizer, known_codes(processor)
    sample = decompression_sample(codes, num_segments=2, processor=processor)
    ids, mask = sample["input_ids"], sample["assistant_masks"]
    spans = tokenizer.find_image_spans(ids)
    assert len(spans) == 4  # read part 1, write part 1, read part 2, write part 2
    positions = codes.view(4, 4)
    pack = processor.visual_tokenizer.pack_codes
    for part, rows in enumerate((positions[:2], positions[2:])):
        (read_begin, read_end), (write_begin, write_end) = spans[2 * part], spans[2 * part + 1]
        assert ids[read_begin:read_end] == pack(rows).tolist()  # one packed id per position (Eq. 5's x_z)
        assert ids[write_begin:write_end] == rows.flatten().tolist()  # D codes per position, raster order
        assert set(mask[read_begin - 1 : read_end + 1]) == {0}
        assert set(mask[write_begin - 1 : write_end + 1]) == {1}
    labels = UniCodeDataCollator(pad_token_id=0)([sample])["labels"][0].tolist()
    written = [labels[i] for begin, end in spans[1::2] for i in range(begin, end)]
    assert written == positions.flatten().tolist()  # the codes are targets
    assert all(
        labels[i] == -100 for begin, end in spans[0::2] for i in range(begin - 1, end + 1)
    )  # reads are not
    text = tokenizer.decode(ids, skip_special_tokens=False)
    assert text.count("ecompress part") == 2  # (the tiny vocabulary has no digits or capitals)
    with pytest.raises(ValueError, match="num_segments must be between 1 and the 4"):
        decompression_sample(codes, num_segments=5, processor=processor)


def test_conversation_reads_user_images_and_writes_assistant_images(unicode):
    _, processor = unicode
    codes = known_codes(processor)
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what is this?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "a cat"}]},
        {"role": "user", "content": [{"type": "text", "text": "draw a cat"}]},
        {"role": "assistant", "content": [{"type": "image"}]},
    ]
    sample = encode_conversation(messages, [codes, codes], processor)
    ids, mask = sample["input_ids"], sample["assistant_masks"]
    (read, written) = processor.tokenizer.find_image_spans(ids)
    assert ids[read[0] : read[1]] == processor.visual_tokenizer.pack_codes(codes).flatten().tolist()
    assert ids[written[0] : written[1]] == codes.flatten().tolist()
    assert mask[read[0]] == 0 and mask[written[0]] == 1
    assert processor.decode_images(ids)[0].size == (16, 16)  # both spans decode to images
    first_answer = [
        t for i, (t, m) in enumerate(zip(ids, mask, strict=True)) if m and read[1] < i < written[0] - 1
    ]
    assert processor.tokenizer.decode(first_answer, skip_special_tokens=True).strip() == "a cat"
    with pytest.raises(ValueError, match="2 image item"):
        encode_conversation(messages, [codes], processor)
    with pytest.raises(ValueError, match="no assistant turn"):
        encode_conversation(messages[:1], [codes], processor)


def test_tokenize_conversations_is_cached_on_disk(unicode, tmp_path, monkeypatch):
    _, processor = unicode
    records = [
        {
            "messages": [
                {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what is this?"}]},
                {"role": "assistant", "content": "a red apple"},
            ],
            "images": [Image.new("RGB", (16, 16), color)],
        }
        for color in ("red", "blue", "white")
    ]
    dataset = conversations_to_dataset(records)
    first = tokenize_conversations(dataset, processor, cache_dir=str(tmp_path))
    assert len(first) == 3 and set(first["task"]) == {"conversation"}
    assert len(os.listdir(tmp_path)) >= 1
    monkeypatch.setattr(type(processor), "encode_images", lambda *a, **k: pytest.fail("re-encoded images"))
    second = tokenize_conversations(dataset, processor, cache_dir=str(tmp_path))
    assert second["input_ids"] == first["input_ids"]
    with pytest.raises(ValueError, match="'messages' and 'images'"):
        tokenize_conversations(dataset.remove_columns("images"), processor)


def test_mixture_follows_the_ratios():
    plan = mixture_indices({"a": 10, "b": 3}, {"a": 1, "b": 1}, num_samples=12)
    assert len(plan["a"]) == 6 and len(plan["b"]) == 6
    assert sorted(set(plan["b"].tolist())) == [0, 1, 2]  # a small part is repeated
    assert len(set(plan["a"].tolist())) == 6  # a large one is subsampled without repeats
    thirds = mixture_indices({"a": 9, "b": 9, "c": 9}, {"a": 1, "b": 1, "c": 1}, num_samples=13)
    assert [len(indices) for indices in thirds.values()] == [5, 4, 4]  # the shares add up to num_samples
    assert parse_mixture("caption=1, group=2.5") == {"caption": 1.0, "group": 2.5}
    with pytest.raises(ValueError, match="unknown parts"):
        mixture_indices({"a": 1}, {"z": 1}, 4)
    with pytest.raises(ValueError, match="at least one > 0"):
        mixture_indices({"a": 1}, {"a": 0}, 4)
    with pytest.raises(ValueError, match="empty"):
        mixture_indices({"a": 0}, {"a": 1}, 4)
    with pytest.raises(ValueError, match="not name=ratio"):
        parse_mixture("caption:1")
    import datasets

    mixed = mix_datasets(
        {"a": datasets.Dataset.from_dict({"x": [0] * 5}), "b": datasets.Dataset.from_dict({"x": [1]})},
        {"a": 3, "b": 1},
        num_samples=8,
    )
    assert sorted(mixed["x"]) == [0] * 6 + [1] * 2


def test_label_balance_draws_every_label_equally_often():
    labels = ["common"] * 90 + ["rare"] * 10
    assert label_balance_weights(labels, 0.0).tolist() == [1.0] * 100  # natural frequencies
    plan = mixture_indices({"a": 100}, {"a": 1}, 2000, weights={"a": label_balance_weights(labels, 1.0)})
    rare = sum(labels[i] == "rare" for i in plan["a"]) / 2000
    assert 0.45 < rare < 0.55, rare
    half = mixture_indices({"a": 100}, {"a": 1}, 2000, weights={"a": label_balance_weights(labels, 0.5)})
    assert 0.2 < sum(labels[i] == "rare" for i in half["a"]) / 2000 < 0.3  # sqrt(10) : sqrt(90) = 25 %
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        label_balance_weights(labels, 2.0)
    with pytest.raises(ValueError, match="100 records but"):
        mixture_indices({"a": 100}, {"a": 1}, 8, weights={"a": [1.0] * 3})


def test_balance_groups_evens_out_the_group_answers(tmp_path):
    """The first 48 training emoji are 41 Symbols, 6 Travel & Places and 1 Objects; balanced, each group
    answers about a third of the questions."""
    from transformers_unicode.training.stage2 import SFTScriptArguments, build_sft_dataset

    _, processor = tiny_unicode()

    def top_answer_share(balance):
        script = SFTScriptArguments(
            mixture="group=1", num_samples=96, train_limit=48, eval_limit=0, balance_groups=balance
        )
        dataset = build_sft_dataset(script, processor, str(tmp_path), {})
        answers = [
            tuple(i for i, m in zip(ids, mask, strict=True) if m)
            for ids, mask in zip(dataset["input_ids"], dataset["assistant_masks"], strict=True)
        ]
        return max(answers.count(a) for a in set(answers)) / len(answers)

    assert top_answer_share(0.0) > 0.75
    assert top_answer_share(1.0) < 0.5
    with pytest.raises(ValueError, match=r"--balance_groups must lie in \[0, 1\]"):
        SFTScriptArguments(balance_groups=-0.5)
    llava = SFTScriptArguments(dataset="chat.json", image_folder=".", balance_groups=1.0)
    with pytest.raises(ValueError, match="a LLaVA data set has none"):
        build_sft_dataset(llava, processor, str(tmp_path), {})


def test_mirror_images_doubles_the_distinct_images_of_the_tasks_that_do_not_name_the_emoji(tmp_path):
    from transformers_unicode.data.openmoji import load_openmoji
    from transformers_unicode.data.openmoji_conversations import with_mirrored_copies
    from transformers_unicode.training.stage2 import SFTScriptArguments, build_sft_dataset

    renders = load_openmoji(split="train", size=16, limit=4)
    doubled = with_mirrored_copies(renders)
    assert len(doubled) == 8 and list(doubled["group"]) == list(renders["group"]) * 2
    assert doubled[5]["emoji"] == renders[1]["emoji"] + " (mirrored)"
    assert np.array_equal(np.asarray(doubled[5]["image"]), np.asarray(renders[1]["image"])[:, ::-1])

    _, processor = tiny_unicode()

    def distinct_samples(mirror):
        script = SFTScriptArguments(
            mixture="group=1,text_to_image=1",
            num_samples=64,
            train_limit=4,
            eval_limit=0,
            mirror_images=mirror,
        )
        dataset = build_sft_dataset(script, processor, str(tmp_path), {})
        return {
            task: len(
                {
                    tuple(ids)
                    for ids, t in zip(dataset["input_ids"], dataset["task"], strict=True)
                    if t == task
                }
            )
            for task in ("group", "text_to_image")
        }

    assert distinct_samples(False) == {"group": 4, "text_to_image": 4}
    mirrored = distinct_samples(True)
    assert mirrored["group"] > 4  # the mirrored renders read as other codes
    # A name's drawing stays the original ("left arrow" must point left).
    assert mirrored["text_to_image"] == 4
    llava = SFTScriptArguments(dataset="chat.json", image_folder=".", mirror_images=True)
    with pytest.raises(ValueError, match="--mirror_images mirrors OpenMoji"):
        build_sft_dataset(llava, processor, str(tmp_path), {})


def test_openmoji_conversations_carry_cldr_groups():
    conversations = openmoji_conversations("group", split="test", size=16, limit=3)
    assert len(conversations) == 3
    question = conversations[0]["messages"][0]["content"]
    assert question[0]["type"] == "image" and question[1]["text"] == group_question()
    answers = [c["messages"][1]["content"][0]["text"] for c in conversations]
    assert set(answers) <= set(emoji_group_names())
    assert "Component" not in emoji_group_names() and "Animals & Nature" in emoji_group_names()
    drawing = openmoji_conversations("text_to_image", split="test", size=16, limit=1)[0]
    assert drawing["messages"][1]["content"] == [{"type": "image", "text": None}]
    with pytest.raises(ValueError, match="Unknown OpenMoji task"):
        openmoji_conversations("poetry", limit=1)


# ---- the loss from supervised positions only -----------------------------------------------------
def test_supervised_only_loss_equals_the_full_logits_loss(unicode):
    model, processor = unicode
    torch.manual_seed(0)
    ids = torch.randint(10, 100, (2, 12))
    labels = ids.clone()
    labels[:, :7] = -100
    labels[1, -2:] = -100
    full = model(input_ids=ids, labels=labels, skip_logits=False)
    fast = model(input_ids=ids, labels=labels, skip_logits=True)
    assert fast.logits is None and full.logits.shape == (2, 12, model.config.text_config.vocab_size)
    torch.testing.assert_close(fast.loss, full.loss)
    for items in (5, 9):  # gradient accumulation: a sum over num_items_in_batch
        torch.testing.assert_close(
            model(input_ids=ids, labels=labels, skip_logits=True, num_items_in_batch=items).loss,
            model(input_ids=ids, labels=labels, skip_logits=False, num_items_in_batch=items).loss,
        )
    model.train()
    try:
        assert (
            model(input_ids=ids, labels=labels).logits is None
        )  # training with labels: no logits by default
        grads = []
        for skip in (True, False):
            model.zero_grad()
            model(input_ids=ids, labels=labels, skip_logits=skip).loss.backward()
            grads.append(model.lm_head.weight.grad.clone())
        torch.testing.assert_close(grads[0], grads[1])
    finally:
        model.zero_grad()
        model.eval()
    with pytest.raises(ValueError, match="pass labels"):
        model(input_ids=ids, skip_logits=True)


# ---- SFTTrainer ------------------------------------------------------------------------------------
def losses(trainer):
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


def test_full_tuning_trains_saves_and_reloads(tmp_path):
    from transformers import AutoModelForCausalLM, AutoProcessor

    model, processor = tiny_unicode()
    before = model.lm_head.weight.clone()
    results, trainer = tiny_sft(tmp_path, unicode=(model, processor))
    curve = losses(trainer)
    assert len(curve) == 4 and all(torch.isfinite(torch.tensor(curve)))
    assert not torch.equal(before, model.lm_head.weight)
    assert json.loads((tmp_path / "sft_results.json").read_text())["data"]["samples"] == 16
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    AutoProcessor.from_pretrained(tmp_path)
    torch.testing.assert_close(reloaded.lm_head.weight, model.lm_head.weight)
    assert results["train"]["train_loss"] > 0


def test_lora_adapters_save_load_and_merge(tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    tiny_sft(tmp_path, model_args=ModelConfig(use_peft=True, lora_r=4, lora_alpha=8))
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    ids = torch.randint(10, 100, (1, 9))
    with torch.no_grad():
        base, _ = tiny_unicode()
        untuned = base(input_ids=ids).logits
        loaded = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
        lora = [name for name in loaded.state_dict() if "lora_" in name]
        assert lora and all("language_model" in name for name in lora)  # never the visual tokenizer
        tuned = loaded(input_ids=ids).logits
        assert not torch.allclose(tuned, untuned), "the adapters changed the model"
        merged = loaded.merge_and_unload()
        torch.testing.assert_close(merged(input_ids=ids).logits, tuned, rtol=1e-4, atol=1e-5)
        saved = AutoModelForCausalLM.from_pretrained(tmp_path)  # run_sft also saves the merged model
        torch.testing.assert_close(saved(input_ids=ids).logits, tuned, rtol=1e-4, atol=1e-5)


def test_lora_on_every_linear_layer_of_the_llm_only(tmp_path):
    _, trainer = tiny_sft(
        tmp_path,
        model_args=ModelConfig(use_peft=True, lora_r=4, lora_target_modules=["all-linear"]),
        script={"merge_lora": False},
        max_steps=1,
        save_strategy="no",
    )
    adapted = {
        n.split(".lora_")[0].rsplit(".", 1)[-1] for n, _ in trainer.model.named_parameters() if "lora_" in n
    }
    assert adapted == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


def test_group_by_length_batches_pad_less_than_random_ones(tmp_path):
    """The mixture carries transformers' `length` column, so `train_sampling_strategy="group_by_length"`
    puts samples of one task together instead of padding short answers to the longest image span."""

    def padding(strategy):
        script = {"num_samples": 64, "train_limit": 32}
        _, trainer = tiny_sft(
            tmp_path / strategy, max_steps=1, script=script, train_sampling_strategy=strategy
        )
        dataset = trainer.train_dataset
        assert all(key >= len(ids) for key, ids in zip(dataset["length"], dataset["input_ids"], strict=True))
        batches = list(trainer.get_train_dataloader())
        assert sum(len(batch["input_ids"]) for batch in batches) == 64  # every sample, once
        return sum(int((batch["attention_mask"] == 0).sum()) for batch in batches)

    grouped, shuffled = padding("group_by_length"), padding("random")
    assert grouped < shuffled / 2, (grouped, shuffled)


def test_length_grouping_does_not_sort_group_questions_by_answer(tmp_path):
    """On group questions alone a sample's exact length is its answer's token count; sorting by it put one
    group in each batch and the model learnt the prior (issue 14). Every group question gets one `length`."""
    from transformers_unicode.training.stage2 import SFTScriptArguments, build_sft_dataset

    _, processor = tiny_unicode()
    script = SFTScriptArguments(mixture="group=1", num_samples=48, train_limit=48, eval_limit=0)
    dataset = build_sft_dataset(script, processor, str(tmp_path), {})
    assert len({len(ids) for ids in dataset["input_ids"]}) > 1  # the answers do differ in length
    assert len(set(dataset["length"])) == 1


def test_a_plan_too_small_for_every_task_leaves_the_empty_ones_out(tmp_path):
    """Two samples drawn from a five-task mixture leave some tasks with none: they are skipped, not mapped."""
    from transformers_unicode.training.stage2 import SFTScriptArguments, build_sft_dataset

    _, processor = tiny_unicode()
    mixture = "caption=1,group=1,text_to_image=1,group_to_image=1,decompression=1"
    script = SFTScriptArguments(mixture=mixture, num_samples=2, train_limit=8, eval_limit=0)
    dataset = build_sft_dataset(script, processor, str(tmp_path), {})
    assert len(dataset) == 2
    assert {"input_ids", "length"} <= set(dataset.column_names)


def test_killed_run_resumes_on_the_same_loss_curve(tmp_path):
    schedule = dict(max_steps=6, save_strategy="steps", save_steps=3)
    _, whole = tiny_sft(tmp_path / "a", **schedule)
    with pytest.raises(KeyboardInterrupt):
        tiny_sft(tmp_path / "b", callbacks=[StopAt(4)], **schedule)
    assert sorted(p for p in os.listdir(tmp_path / "b") if p.startswith("checkpoint")) == ["checkpoint-3"]
    _, resumed = tiny_sft(
        tmp_path / "b", resume_from_checkpoint=str(tmp_path / "b" / "checkpoint-3"), **schedule
    )
    assert losses(resumed)[-3:] == losses(whole)[-3:]  # exactly: resume is bit-identical (issue 18)
    resumed_state = resumed.model.state_dict()
    different = [
        key for key, value in whole.model.state_dict().items() if not resumed_state[key].equal(value)
    ]
    assert not different, different


def test_codebook_sync_callback_follows_the_tuned_table_under_sfttrainer(tmp_path):
    model, processor = tiny_unicode()
    codebook = model.visual_tokenizer.codebook
    table = lambda: model.get_input_embeddings().weight[codebook.visual_ids].detach().float()  # noqa: E731
    start = codebook.embedding.clone()
    tiny_sft(
        tmp_path,
        unicode=(model, processor),
        callbacks=[CodebookSyncCallback(mode="iter", sync_every=1, decay=0.5, llm=model)],
    )
    assert (codebook.embedding - table()).norm() < 0.2 * (start - table()).norm()  # 4 pulls of 0.5 each


@pytest.mark.parametrize("image_head", ["flat", "depth"])
def test_two_process_sft_keeps_identical_replicas(tmp_path, image_head):
    """DDP on CPU: the replicas end bit-identical, the depth head's (issue 16) included, and training moved it."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        os.path.join(HERE, "scripts", "ddp_sft.py"),
        str(tmp_path),
        image_head,
    ]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([os.path.join(HERE, ".."), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert rank0["world_size"] == 2
    assert all(torch.isfinite(torch.tensor(rank0["losses"]))) and len(rank0["losses"]) == 3
    for key, value in rank0["state"].items():
        assert torch.equal(value, rank1["state"][key]), key
    if image_head == "depth":
        untrained = tiny_unicode(image_head="depth")[0].state_dict()["depth_head.input_projection.weight"]
        assert not torch.equal(rank0["state"]["depth_head.input_projection.weight"], untrained)
    fresh, _ = tiny_unicode()
    assert not torch.equal(rank0["state"]["lm_head.weight"], fresh.lm_head.weight), (
        "training moved the weights"
    )


# ---- evaluation helpers and the CLI --------------------------------------------------------------
def test_exact_match_accuracy_by_hand():
    result = exact_match_accuracy(
        ["Flags.", "objects", "Flags", "Symbols"], ["Flags", "Objects", "Objects", "Objects"]
    )
    assert result["accuracy"] == 0.5
    assert result["balanced_accuracy"] == pytest.approx((1 + 1 / 3) / 2)
    assert result["majority_baseline"] == 0.75
    with pytest.raises(ValueError, match="as many predictions"):
        exact_match_accuracy(["a"], [])


def test_text_to_image_quality_by_hand():
    red, blue, green = (Image.new("RGB", (8, 8), c) for c in ("red", "blue", "green"))
    perfect = text_to_image_quality([red, blue], [red, blue], [red, blue, green])
    assert perfect["top1"] == 1.0 and perfect["psnr"] > 90
    swapped = text_to_image_quality([blue, red], [red, blue], [red, blue, green])
    assert swapped["top1"] == 0.0 and swapped["top5"] == 1.0
    assert swapped["psnr"] == pytest.approx(
        10 * torch.log10(torch.tensor(255.0**2 / (2 * 255**2 / 3))).item(), rel=1e-6
    )


def test_sft_cli_errors_are_messages(tmp_path, capsys):
    assert main(["sft", "--output_dir", str(tmp_path / "none"), "--resume"]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    assert (
        main(["sft", "--model_name_or_path", str(tmp_path / "missing"), "--output_dir", str(tmp_path)]) == 1
    )
    assert "No model folder" in capsys.readouterr().err
    (tmp_path / "recipe.yaml").write_text(
        "model_name_or_path: " + str(tmp_path / "missing") + "\noutput_dir: " + str(tmp_path) + "\n"
    )
    assert main(["sft", "--config", str(tmp_path / "recipe.yaml")]) == 1
    assert "No model folder" in capsys.readouterr().err
    assert main(["sft", "--no_such_flag", "1"]) != 0


def test_sft_cli_keeps_trls_checkpointing_default_without_the_deprecated_alias(tmp_path, monkeypatch):
    """TRL's SFTConfig says `gradient_checkpointing=True` (a FutureWarning); the CLI says it by the new name."""
    import warnings

    from transformers_unicode.training import stage2

    seen = []
    monkeypatch.setattr(
        stage2, "run_sft", lambda script, training, model, **kwargs: seen.append(training) or {}
    )
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "error", message=".*gradient_checkpointing.* is deprecated", category=FutureWarning
        )
        assert main(["sft", "--output_dir", str(tmp_path)]) == 0
        assert main(["sft", "--output_dir", str(tmp_path), "--activation_checkpointing", "false"]) == 0
    (tmp_path / "recipe.yaml").write_text(f"output_dir: {tmp_path}\ngradient_checkpointing: false\n")
    with pytest.warns(FutureWarning, match="gradient_checkpointing"):  # the user's own choice of the old name
        assert main(["sft", "--config", str(tmp_path / "recipe.yaml")]) == 0
    assert [args.activation_checkpointing for args in seen] == [True, False, False]


@pytest.mark.parametrize("name", ["ddp", "fsdp", "zero2", "zero3", "multi_node", "cpu_2proc"])
def test_accelerate_configs_load(name):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(os.path.join(HERE, "..", "examples", "accelerate", f"{name}.yaml"))
    assert config.num_processes >= 2
    assert config.distributed_type.value in {"MULTI_GPU", "FSDP", "DEEPSPEED"}


def test_public_api_exposes_stage2():
    import transformers_unicode as tu

    assert tu.run_sft is run_sft and tu.UniCodeDataCollator is UniCodeDataCollator
    assert issubclass(tu.UniCodeSFTTrainer, __import__("trl").SFTTrainer)


def test_sft_cli_trains_a_saved_model_from_a_yaml_recipe(tmp_path, capsys):
    model, processor = tiny_unicode()
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"model_name_or_path: {tmp_path / 'model'}\noutput_dir: {tmp_path / 'out'}\nmax_steps: 2\n"
        "per_device_train_batch_size: 4\nnum_samples: 8\ntrain_limit: 8\neval_limit: 0\n"
        "mixture: caption=1,text_to_image=1\nactivation_checkpointing: false\nmax_length: null\nreport_to: none\n"
        "save_steps: 1\ndisable_tqdm: true\n"
    )
    assert main(["sft", "--config", str(recipe)]) == 0
    assert '"samples": 8' in capsys.readouterr().out
    assert (tmp_path / "out" / "checkpoint-2").is_dir()
    card = (tmp_path / "out" / "README.md").read_text()  # TRL's checkpoint card replaced by ours
    assert "trust_remote_code=True" in card and "pip install" in card
    assert (
        main(["sft", "--config", str(recipe), "--max_steps", "3", "--resume"]) == 0
    )  # flags override the file
    assert (tmp_path / "out" / "checkpoint-3").is_dir()


def write_llava(folder, records):
    (folder / "images").mkdir(parents=True, exist_ok=True)
    for color in ("red", "blue", "green"):
        Image.new("RGB", (16, 16), color).save(folder / "images" / f"{color}.png")
    (folder / "chat.json").write_text(json.dumps(records))
    return str(folder / "chat.json"), str(folder / "images")


LLAVA = [
    {
        "id": f"ok-{color}",
        "image": f"{color}.png",
        "conversations": [
            {"from": "human", "value": "<image>\nwhat is this?"},
            {"from": "gpt", "value": f"a {color} square"},
        ],
    }
    for color in ("red", "blue", "green")
] + [
    {
        "id": "broken",
        "image": "missing.png",
        "conversations": [
            {"from": "human", "value": "<image>\nwhat is this?"},
            {"from": "gpt", "value": "nothing"},
        ],
    }
]


def test_sft_on_llava_json_skips_and_counts_bad_records(tmp_path):
    json_file, image_folder = write_llava(tmp_path, LLAVA)
    script = {
        "dataset": json_file,
        "image_folder": image_folder,
        "num_samples": 8,
        "mixture": DEFAULT_MIXTURE,
    }
    with pytest.raises(InvalidRecordError, match="broken"):
        tiny_sft(tmp_path / "strict", script=script, max_steps=1)
    results, trainer = tiny_sft(
        tmp_path / "out", script={**script, "skip_invalid_records": True}, max_steps=2
    )
    report = results["data"]["records"]["conversation"]
    assert report["total"] == 4 and report["kept"] == 3 and [s[1] for s in report["skipped"]] == ["broken"]
    assert results["data"]["samples"] == 8 and len(losses(trainer)) == 2
