"""Two-process Stage I run for tests/test_stage1.py (torchrun --standalone --nproc_per_node 2 ...).

Buffers are NOT broadcast by DDP here (ddp_broadcast_buffers=False), so identical codebooks on both
ranks can only come from the all-reduced EMA statistics and the rank-0 dead-code choices.
"""

import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from conftest import tiny_llm  # noqa: E402

from transformers_unicode.training.stage1 import (  # noqa: E402
    TokenizerTrainerArguments,
    TokenizerTrainingArguments,
    train_tokenizer,
)

out = sys.argv[1]
args = TokenizerTrainingArguments(
    dataset="digits",
    image_size=16,
    latent_size=2,
    patch_size=2,
    block_out_channels="16,16,16",
    num_visual_codes=64,
    dead_code_threshold=0.5,
    sync_every=2,
    train_limit=64,
    eval_limit=8,
)
trainer_args = TokenizerTrainerArguments(
    output_dir=out,
    max_steps=4,
    per_device_train_batch_size=4,
    save_strategy="no",
    logging_steps=2,
    ddp_broadcast_buffers=False,
    disable_tqdm=True,
    seed=0,
)
trainer = {}
metrics = train_tokenizer(args, trainer_args, llm=tiny_llm(), trainer_out=trainer)
rank = torch.distributed.get_rank()
model = trainer["trainer"].model
torch.save(
    {
        "codebook": model.codebook.embedding,
        "cluster_size": model.codebook.cluster_size,
        "world_size": torch.distributed.get_world_size(),
        "loss": trainer["trainer"].state.log_history[-1],
    },
    os.path.join(out, f"rank{rank}.pt"),
)
