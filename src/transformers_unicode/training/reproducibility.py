"""Seeding what is built before a Trainer exists.

`transformers.Trainer` seeds python, numpy and torch in its `__init__` (`set_seed(args.seed)`, or
`enable_full_determinism` under `--full_determinism`), but our entry points build the model first: Stage I's
random encoder/decoder init and the image-marker rows that `UniCodeForCausalLM.from_llm` adds to the LLM
table. torch starts every process from a random seed, so without seeding here two runs with the same
`--seed` start from different weights.
"""

from __future__ import annotations

from transformers import TrainingArguments
from transformers.trainer_utils import enable_full_determinism, set_seed


def seed_everything(training_args: TrainingArguments) -> None:
    """Seed as the Trainer will (`seed`; `full_determinism` also switches torch to deterministic algorithms)."""
    if training_args.full_determinism:
        enable_full_determinism(training_args.seed)
    else:
        set_seed(training_args.seed)


__all__ = ["seed_everything"]
