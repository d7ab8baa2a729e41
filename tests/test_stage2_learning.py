"""Stage II can learn: the answer's gradient reaches the rows an image is read through (fast, tiny model), and
issue 14's overfit check, the shipped path memorising 32 group answers and 4 drawings with SmolLM2 (slow)."""

import pytest
import torch
from conftest import tiny_unicode
from transformers import TrainerCallback

from transformers_unicode import UniCodeForCausalLM, load_openmoji
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
    # 6 rows: 2 conversations of 3 choices per forward pass, so padding and a short last batch are covered
    scores = choice_log_likelihoods(model, processor, conversations, choices, batch_size=6)

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


# ---- the overfit test on the embedded default (slow) ------------------------------------------------------
MEMORISED_GROUPS = ("Smileys & Emotion", "Animals & Nature", "Food & Drink", "Objects")
# SmolLM2 itself, with a 32 px tokenizer (4 x 4 positions of 2 codes): an image is 16 LLM positions and a
# drawing 32 codes, so the check runs in CI. What it proves does not depend on the geometry.
OVERFIT_GEOMETRY = {"image_size": 32, "latent_size": 4, "codes_per_position": 2}
STAGE1_STEPS = 120  # a short Stage I: an untrained tokenizer's codes are not memorised in 40 steps (README)
# Steps and rates found by a short sweep on this geometry; the test itself is the measurement (README).
GROUP_STEPS, GROUP_LR = 40, 1e-4  # 32 emoji, batch 8: 10 epochs (32 left 2 of 32 wrong on one machine)
GROUP_CHECKS = (24, 32)  # also scored here, stopping once memorised (24 sufficed on one machine)
DRAWING_STEPS, DRAWING_LR = 32, 3e-4  # 4 drawings, batch 4


@pytest.fixture(scope="module")
def smollm2_after_stage1(tmp_path_factory):
    """SmolLM2 and a briefly trained Stage I tokenizer (the first 512 training emoji), and the 32 to memorise."""
    from transformers_unicode import UniCodeVisualTokenizer, load_llm
    from transformers_unicode.training.stage1 import (
        TokenizerTrainerArguments,
        TokenizerTrainingArguments,
        train_tokenizer,
    )

    folder = tmp_path_factory.mktemp("stage1")
    llm, llm_tokenizer = load_llm("embedded")
    train_tokenizer(
        TokenizerTrainingArguments(train_limit=512, eval_limit=8, **OVERFIT_GEOMETRY),
        TokenizerTrainerArguments(
            output_dir=str(folder),
            max_steps=STAGE1_STEPS,
            per_device_train_batch_size=8,
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
            seed=0,
        ),
        llm=llm,
        llm_tokenizer=llm_tokenizer,
    )
    train = load_openmoji("train", size=OVERFIT_GEOMETRY["image_size"])
    chosen = [
        i for group in MEMORISED_GROUPS for i in [j for j, g in enumerate(train["group"]) if g == group][:8]
    ]
    return UniCodeVisualTokenizer.from_pretrained(folder), train.select(chosen)


class StopOnceMemorised(TrainerCallback):
    """Scores the model at `checks` (training steps) and ends training once `score(model) >= threshold`.

    The claim is "memorised within the step cap": a machine whose floats get there sooner need not pay for the
    rest (the group check was memorised at step 24 on one machine, and short of it at 32 on another; README).
    """

    def __init__(self, checks, score, threshold: float):
        self.checks, self.score, self.threshold = set(checks), score, threshold

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step in self.checks:
            model.eval()
            if self.score(model) >= self.threshold:
                control.should_training_stop = True
            model.train()


def memorise(model, processor, conversations, task: str, steps: int, batch_size: int, output_dir, lr: float,
             callbacks=None):  # fmt: skip
    """Full tuning through the shipped Stage II path (processor, collator, UniCodeSFTTrainer, the model's loss)."""
    import datasets
    from trl import SFTConfig

    from transformers_unicode.training.stage2 import UniCodeSFTTrainer

    samples = tokenize_conversations(conversations, processor, task=task)
    repeats = -(-steps * batch_size // len(samples))
    dataset = datasets.concatenate_datasets([samples] * repeats).shuffle(seed=0).flatten_indices()
    model.model.language_model.requires_grad_(True)
    arguments = SFTConfig(
        output_dir=str(output_dir),
        max_steps=steps,
        per_device_train_batch_size=batch_size,
        learning_rate=lr,
        lr_scheduler_type="constant",
        save_strategy="no",
        activation_checkpointing=False,
        max_length=None,
        remove_unused_columns=False,
        dataset_kwargs={"skip_prepare_dataset": True},
        use_cpu=True,
        bf16=False,
        report_to="none",
        disable_tqdm=True,
        seed=0,
    )
    collator = UniCodeDataCollator.from_processor(processor)
    UniCodeSFTTrainer(model=model, args=arguments, train_dataset=dataset, processing_class=processor,
                      data_collator=collator, callbacks=callbacks).train()  # fmt: skip
    return model.eval()


@pytest.mark.slow
def test_stage2_memorises_the_group_of_32_emoji(smollm2_after_stage1, tmp_path):
    """Issue 14's overfit check: the shipped path learns to read 32 images (chance 25 %) within a few CPU minutes."""
    from transformers_unicode import load_llm
    from transformers_unicode.evaluation.stage2 import answer_questions, exact_match_accuracy

    visual, emoji = smollm2_after_stage1
    llm, llm_tokenizer = load_llm("embedded")
    model, processor = UniCodeForCausalLM.from_llm(
        llm, visual, tokenizer=llm_tokenizer, return_processor=True
    )
    questions = openmoji_conversations("group", images=emoji)

    def accuracy(model):
        answers = answer_questions(model, processor, questions, max_new_tokens=8)
        return exact_match_accuracy(answers, emoji["group"])["accuracy"]

    stop = StopOnceMemorised(GROUP_CHECKS, accuracy, threshold=0.95)
    model = memorise(
        model, processor, questions, "group", GROUP_STEPS, 8, tmp_path, lr=GROUP_LR, callbacks=[stop]
    )
    answers = answer_questions(model, processor, questions, max_new_tokens=8)
    assert exact_match_accuracy(answers, emoji["group"])["accuracy"] >= 0.95, answers


@pytest.mark.slow
def test_stage2_memorises_4_drawings_code_by_code(smollm2_after_stage1, tmp_path):
    """Greedy decoding writes >= 90 % of the code ids of 4 drawings it was tuned on."""
    from transformers_unicode import load_llm
    from transformers_unicode.data.openmoji_conversations import TEXT_TO_IMAGE_PROMPT
    from transformers_unicode.evaluation.stage2 import drawing_code_accuracy

    visual, emoji = smollm2_after_stage1
    drawn = emoji.select([8 * group for group in range(len(MEMORISED_GROUPS))])
    llm, llm_tokenizer = load_llm("embedded")
    model, processor = UniCodeForCausalLM.from_llm(
        llm, visual, tokenizer=llm_tokenizer, return_processor=True
    )
    model = memorise(model, processor, openmoji_conversations("text_to_image", images=drawn), "text_to_image",
                     DRAWING_STEPS, 4, tmp_path, lr=DRAWING_LR)  # fmt: skip
    prompts = [TEXT_TO_IMAGE_PROMPT.format(name=name) for name in drawn["name"]]
    assert drawing_code_accuracy(model, processor, prompts, drawn["image"]) >= 0.90
