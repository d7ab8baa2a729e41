"""Language-driven iterative codebook training as a `transformers.TrainerCallback`."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from accelerate.utils import extract_model_from_parallel
from transformers import TrainerCallback
from transformers.utils import logging

from ..modeling.llm_utils import gathered
from ..modeling.quantization_unicode import UnifiedCodebook

logger = logging.get_logger(__name__)

CODEBOOK_MODES = ("iter", "frozen", "dual")
PULL_SCHEDULES = ("constant", "linear")


def find_codebook(model: torch.nn.Module) -> UnifiedCodebook:
    """The unified codebook inside a (possibly accelerate/DDP-wrapped) model."""
    model = extract_model_from_parallel(model)
    for module in model.modules():
        if isinstance(module, UnifiedCodebook):
            return module
    raise ValueError(
        f"{type(model).__name__} has no UnifiedCodebook; CodebookSyncCallback needs a model that contains a "
        "UniCodeVisualTokenizer."
    )


class CodebookSyncCallback(TrainerCallback):
    r"""
    Keeps the visual codebook C tied to the LLM's embedding table C_L during training (UniCode, Stage I).

    Between syncs the codebook follows the encoder by exponential moving average (done by the quantizer
    in every training forward, Eq. 2):

        N_k <- gamma N_k + (1 - gamma) sum_i 1[M_i = k]
        m_k <- gamma m_k + (1 - gamma) sum_i 1[M_i = k] z_i,        e_k <- m_k / N_k

    and every `sync_every` optimizer steps this callback applies, by `mode`:

    - `"iter"` (the paper's): C <- decay * C + (1 - decay) * C_L          (Eq. 3)
    - `"frozen"`: C = C_L at all times; the EMA is switched off.
    - `"dual"`: C and C_L are swapped: the tokenizer's codebook overwrites the LLM's rows and vice versa
      (the paper's ablation, in which the LLM's language ability collapses).

    C_L is read from `llm` when one is given (a live `PreTrainedModel` or embedding module; gathered under
    DeepSpeed ZeRO-3, and edited under `GatheredParameters(modifier_rank=0)` in dual mode); otherwise from
    the frozen copy of the LLM rows that the tokenizer keeps (`codebook.llm_embedding`), which is the
    Stage I case where the LLM itself is not being trained.

    With a constant gamma the EMA toward the encoder outweighs the pull, and C ends far from C_L (README,
    issue 15). Two options, for `"iter"`, make the end point C = C_L exactly while the encoder and decoder
    keep training:

    - `pull_schedule="linear"`: gamma anneals from `decay` to 0, linearly in the share of `max_steps` done,
      reaching 0 when `freeze_fraction` of the run is done (or at its end);
    - `freeze_fraction=f`: from that share of the run on, C = C_L and the EMA is off (the `"frozen"` mode for
      the last 1 - f of training), so the encoder and decoder adapt to the LLM's own rows.

    Args:
        mode (`str`, *optional*, defaults to `"iter"`): `"iter"`, `"frozen"` or `"dual"`.
        sync_every (`int`, *optional*, defaults to 50): T, optimizer steps between syncs.
        decay (`float`, *optional*, defaults to 0.99): gamma of Eq. 3 (its start, under a schedule).
        llm (`torch.nn.Module`, *optional*): the live LLM whose input-embedding table is C_L.
        pull_schedule (`str`, *optional*, defaults to `"constant"`): `"constant"` (the paper's Eq. 3 as written)
            or `"linear"` (gamma annealed to 0).
        freeze_fraction (`float`, *optional*): in (0, 1]; the share of `max_steps` after which C = C_L.

    Example:

    ```python
    >>> from transformers import Trainer
    >>> from transformers_unicode import CodebookSyncCallback
    >>> trainer = Trainer(model=visual_tokenizer, args=args, train_dataset=images,
    ...                   callbacks=[CodebookSyncCallback(mode="iter", sync_every=50, decay=0.99)])
    ```
    """

    def __init__(
        self,
        mode: str = "iter",
        sync_every: int = 50,
        decay: float = 0.99,
        llm: torch.nn.Module | None = None,
        pull_schedule: str = "constant",
        freeze_fraction: float | None = None,
    ):
        if pull_schedule not in PULL_SCHEDULES:
            raise ValueError(f"pull_schedule must be one of {PULL_SCHEDULES}; got {pull_schedule!r}.")
        if freeze_fraction is not None and not 0.0 < freeze_fraction <= 1.0:
            raise ValueError(
                f"freeze_fraction must be in (0, 1] (a share of max_steps); got {freeze_fraction}."
            )
        if mode != "iter" and (pull_schedule != "constant" or freeze_fraction is not None):
            raise ValueError(
                "pull_schedule and freeze_fraction shape the 'iter' pull; use them with mode='iter'."
            )
        if mode not in CODEBOOK_MODES:
            raise ValueError(f"mode must be one of {CODEBOOK_MODES}; got {mode!r}.")
        if sync_every < 1:
            raise ValueError(f"sync_every must be a positive number of steps; got {sync_every}.")
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1); got {decay}.")
        self.mode = mode
        self.sync_every = sync_every
        self.decay = decay
        self.llm = llm
        self.pull_schedule = pull_schedule
        self.freeze_fraction = freeze_fraction

    def _progress(self, state) -> float:
        return state.global_step / state.max_steps if state.max_steps else 0.0

    def _frozen_now(self, state) -> bool:
        return self.freeze_fraction is not None and self._progress(state) >= self.freeze_fraction

    def gamma(self, state) -> float:
        """The pull's gamma at this point of the run (Eq. 3's constant, or its annealed value)."""
        if self.pull_schedule == "constant":
            return self.decay
        return self.decay * max(0.0, 1.0 - self._progress(state) / (self.freeze_fraction or 1.0))

    # ---- C_L: a live LLM table, or the tokenizer's own frozen copy ---------------------------------
    def _llm_weight(self) -> torch.Tensor | None:
        if self.llm is None:
            return None
        embeddings = (
            self.llm.get_input_embeddings() if hasattr(self.llm, "get_input_embeddings") else self.llm
        )
        return embeddings.weight

    @torch.no_grad()
    def _read_target(self, codebook: UnifiedCodebook) -> torch.Tensor:
        weight = self._llm_weight()
        if weight is None:
            return codebook.llm_embedding.clone()
        with gathered(weight):
            return (
                weight[codebook.visual_ids.to(weight.device)].detach().float().to(codebook.embedding.device)
            )

    @torch.no_grad()
    def _write_target(self, codebook: UnifiedCodebook, values: torch.Tensor) -> None:
        weight = self._llm_weight()
        if weight is None:
            codebook.llm_embedding.copy_(values)
            return
        with gathered(weight, modifier_rank=0):
            weight[codebook.visual_ids.to(weight.device)] = values.to(weight)

    # ---- events --------------------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, model=None, **kwargs):
        codebook = find_codebook(model)
        if self.mode == "frozen" or self._frozen_now(state):  # a resumed run may start in the frozen phase
            codebook.set_embedding(self._read_target(codebook))
            codebook.ema_enabled = False
        else:
            codebook.ema_enabled = True

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.mode == "iter" and self._frozen_now(state):
            codebook = find_codebook(model)
            if codebook.ema_enabled:  # the frozen phase begins: C = C_L from here on, no EMA
                codebook.set_embedding(self._read_target(codebook))
                codebook.ema_enabled = False
            return
        if state.global_step % self.sync_every:
            return
        codebook = find_codebook(model)
        target = self._read_target(codebook)
        if self.mode == "iter":
            codebook.pull_toward(target, self.gamma(state))
        elif self.mode == "frozen":
            codebook.set_embedding(target)
        else:  # dual
            current = codebook.embedding.clone()
            codebook.set_embedding(target)
            self._write_target(codebook, current)


class TimeBudgetCallback(TrainerCallback):
    """Ends training (with a final checkpoint) once a wall-clock deadline has passed.

    `TrainingArguments` bounds steps and epochs, not time; a run that must fit a budget (the quickstart)
    stops here instead. The Trainer saves on `should_save`, so `--resume` continues from exactly there.

    Args:
        deadline (`float`): a `clock()` value.
        clock (`Callable[[], float]`, *optional*, defaults to `time.time`): injected by tests, so that no
            test depends on how fast the machine is.
    """

    def __init__(self, deadline: float, clock: Callable[[], float] = time.time):
        self.deadline = deadline
        self.clock = clock
        self.stopped_at: int | None = None

    def on_step_end(self, args, state, control, **kwargs):
        if self.clock() >= self.deadline and state.global_step < state.max_steps:
            logger.warning(
                "Time budget reached at step %d of %d: stopping and saving a checkpoint.",
                state.global_step,
                state.max_steps,
            )
            self.stopped_at = state.global_step
            control.should_training_stop = True
            control.should_save = True
        return control


__all__ = ["CodebookSyncCallback", "CODEBOOK_MODES", "TimeBudgetCallback", "find_codebook"]
