"""Two-process Stage II run for tests/test_sft.py (torchrun --standalone --nproc_per_node 2 ...)."""

import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from conftest import tiny_unicode  # noqa: E402
from trl import ModelConfig, SFTConfig  # noqa: E402

from transformers_unicode.training.stage2 import SFTScriptArguments, run_sft  # noqa: E402

out = sys.argv[1]
model, processor = tiny_unicode()
trainer = {}
run_sft(
    SFTScriptArguments(
        train_limit=16,
        num_samples=24,
        eval_limit=0,
        decompression_segments=2,
        mixture="caption=1,group=1,text_to_image=1,decompression=1",
    ),
    SFTConfig(
        output_dir=out,
        max_steps=3,
        per_device_train_batch_size=4,
        learning_rate=1e-3,
        use_cpu=True,
        bf16=False,
        report_to=[],
        logging_steps=1,
        save_strategy="no",
        max_length=None,
        disable_tqdm=True,
        gradient_checkpointing=False,
        seed=0,
    ),
    ModelConfig(),
    model=model,
    processor=processor,
    trainer_out=trainer,
)
state = trainer["trainer"].state
torch.save(
    {
        "state": {k: v.detach().clone() for k, v in trainer["trainer"].model.state_dict().items()},
        "world_size": torch.distributed.get_world_size(),
        "losses": [h["loss"] for h in state.log_history if "loss" in h],
    },
    os.path.join(out, f"rank{torch.distributed.get_rank()}.pt"),
)
