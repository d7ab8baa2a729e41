"""CodebookSyncCallback under the HF Trainer: iter pulls at the configured rate, frozen never moves,
dual swaps."""

import pytest
import torch
from conftest import tiny_llm, tiny_tokenizer
from datasets import Dataset
from transformers import Trainer, TrainerControl, TrainerState, TrainingArguments

from transformers_unicode import CodebookSyncCallback


def random_images(count=16, size=16, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return Dataset.from_dict(
        {"pixel_values": (torch.rand(count, 3, size, size, generator=generator) * 2 - 1).tolist()}
    )


def collate(records):
    return {"pixel_values": torch.tensor([r["pixel_values"] for r in records])}


def train(tokenizer, callback, tmp_path, steps=4):
    args = TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=steps,
        per_device_train_batch_size=4,
        learning_rate=1e-3,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        remove_unused_columns=False,
    )
    trainer = Trainer(
        model=tokenizer, args=args, train_dataset=random_images(), data_collator=collate, callbacks=[callback]
    )
    trainer.train()
    return trainer


def step_end(callback, model, step):
    state = TrainerState()
    state.global_step = step
    callback.on_step_end(None, state, TrainerControl(), model=model)


def test_iter_pulls_toward_the_table_at_the_configured_rate():
    tokenizer = tiny_tokenizer("rq")
    codebook = tokenizer.codebook
    codebook.set_embedding(torch.randn_like(codebook.embedding))
    callback = CodebookSyncCallback(mode="iter", sync_every=3, decay=0.8)
    before = codebook.embedding.clone()
    for step in (1, 2):
        step_end(callback, tokenizer, step)
        assert torch.equal(codebook.embedding, before), "no pull between syncs"
    step_end(callback, tokenizer, 3)
    assert torch.allclose(codebook.embedding, 0.8 * before + 0.2 * codebook.llm_embedding, atol=1e-6)
    # repeated pulls converge geometrically: distance shrinks by `decay` per sync
    distance = (codebook.embedding - codebook.llm_embedding).norm()
    step_end(callback, tokenizer, 6)
    assert (codebook.embedding - codebook.llm_embedding).norm() == pytest.approx(
        0.8 * float(distance), rel=1e-5
    )


def test_iter_under_the_trainer_moves_toward_the_table(tmp_path):
    tokenizer = tiny_tokenizer("rq", dead_code_threshold=0.0)
    codebook = tokenizer.codebook
    train(tokenizer, CodebookSyncCallback(mode="iter", sync_every=1000, decay=0.5), tmp_path)
    drifted = (codebook.embedding - codebook.llm_embedding).norm()
    assert drifted > 0, "the EMA moves the codebook during training"
    step_end(CodebookSyncCallback(mode="iter", sync_every=1, decay=0.5), tokenizer, 1)
    assert (codebook.embedding - codebook.llm_embedding).norm() == pytest.approx(
        0.5 * float(drifted), rel=1e-5
    )


def test_frozen_never_moves_the_codebook(tmp_path):
    tokenizer = tiny_tokenizer("rq", dead_code_threshold=0.5)
    codebook = tokenizer.codebook
    codebook.set_embedding(torch.zeros_like(codebook.embedding))  # frozen must put C_L back first
    train(tokenizer, CodebookSyncCallback(mode="frozen", sync_every=2), tmp_path)
    assert torch.equal(codebook.embedding, codebook.llm_embedding)


def test_dual_swaps_with_the_tokenizers_table_copy():
    tokenizer = tiny_tokenizer("vq")
    codebook = tokenizer.codebook
    visual = torch.randn_like(codebook.embedding)
    codebook.set_embedding(visual)
    table = codebook.llm_embedding.clone()
    step_end(CodebookSyncCallback(mode="dual", sync_every=1), tokenizer, 1)
    assert torch.equal(codebook.embedding, table) and torch.equal(codebook.llm_embedding, visual)


def test_dual_swaps_with_a_live_llm():
    llm = tiny_llm()
    tokenizer = tiny_tokenizer("vq")
    codebook = tokenizer.codebook
    ids = codebook.visual_ids
    visual = torch.randn_like(codebook.embedding)
    codebook.set_embedding(visual)
    llm_rows = llm.get_input_embeddings().weight[ids].detach().clone()
    llm_rows_before_other = llm.get_input_embeddings().weight[:3].detach().clone()
    step_end(CodebookSyncCallback(mode="dual", sync_every=1, llm=llm), tokenizer, 1)
    weight = llm.get_input_embeddings().weight
    assert torch.equal(codebook.embedding, llm_rows)
    assert torch.equal(weight[ids], visual)
    assert torch.equal(weight[:3], llm_rows_before_other), "special-token rows are not visual codes"


def test_iter_reads_a_live_llm_table():
    llm = tiny_llm(seed=5)
    tokenizer = tiny_tokenizer("vq")
    codebook = tokenizer.codebook
    before = codebook.embedding.clone()
    step_end(CodebookSyncCallback(mode="iter", sync_every=1, decay=0.0, llm=llm), tokenizer, 1)
    assert torch.equal(codebook.embedding, llm.get_input_embeddings().weight[codebook.visual_ids])
    assert not torch.equal(codebook.embedding, before)


def test_linear_schedule_anneals_gamma_to_zero_and_ends_unified(tmp_path):
    """Issue 15: the annealed pull ends at C = C_L exactly, after an encoder that moved the codebook by EMA."""
    callback = CodebookSyncCallback(mode="iter", sync_every=2, decay=0.9, pull_schedule="linear")
    state = TrainerState()
    state.max_steps = 8
    gammas = []
    for step in (0, 2, 4, 6, 8):
        state.global_step = step
        gammas.append(callback.gamma(state))
    assert gammas == pytest.approx([0.9, 0.675, 0.45, 0.225, 0.0])
    tokenizer = tiny_tokenizer("rq", dead_code_threshold=0.0)
    train(tokenizer, callback, tmp_path, steps=8)
    assert tokenizer.codebook.unification() == {
        "llm_cosine": pytest.approx(1.0),
        "llm_relative_distance": 0.0,
    }


def test_freeze_fraction_ends_in_a_frozen_phase(tmp_path):
    """From the freeze point on, C = C_L and the EMA is off, while the encoder and decoder keep training."""
    tokenizer = tiny_tokenizer("rq", dead_code_threshold=0.0)
    encoder_before = next(tokenizer.parameters()).clone()
    callback = CodebookSyncCallback(mode="iter", sync_every=1000, decay=0.99, freeze_fraction=0.5)
    train(tokenizer, callback, tmp_path, steps=6)
    codebook = tokenizer.codebook
    assert not codebook.ema_enabled and torch.equal(codebook.embedding, codebook.llm_embedding)
    assert not torch.equal(next(tokenizer.parameters()), encoder_before)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(mode="both"), "mode"),
        (dict(sync_every=0), "sync_every"),
        (dict(decay=1.5), "decay"),
        (dict(pull_schedule="cosine"), "pull_schedule"),
        (dict(freeze_fraction=0.0), "freeze_fraction"),
        (dict(mode="dual", pull_schedule="linear"), "mode='iter'"),
    ],
)
def test_bad_callback_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CodebookSyncCallback(**kwargs)


def test_callback_needs_a_model_with_a_codebook():
    with pytest.raises(ValueError, match="UnifiedCodebook"):
        step_end(CodebookSyncCallback(sync_every=1), torch.nn.Linear(2, 2), 1)
