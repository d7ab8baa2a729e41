"""Two-process Stage II run for tests/test_sft.py (torchrun --standalone --nproc_per_node 2 ...)."""

import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from conftest import tiny_sft, tiny_unicode  # noqa: E402

out = sys.argv[1]
image_head = sys.argv[2] if len(sys.argv) > 2 else "flat"  # "depth": the depth head (issue 16)
_, trainer = tiny_sft(
    out, unicode=tiny_unicode(image_head=image_head), script={"num_samples": 24}, max_steps=3
)
torch.save(
    {
        "state": {k: v.detach().clone() for k, v in trainer.model.state_dict().items()},
        "world_size": torch.distributed.get_world_size(),
        "losses": [h["loss"] for h in trainer.state.log_history if "loss" in h],
    },
    os.path.join(out, f"rank{torch.distributed.get_rank()}.pt"),
)
