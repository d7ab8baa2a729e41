"""Checkpoints that are either complete or absent.

transformers' Trainer writes `checkpoint-N/` file by file, so a run killed while saving leaves a
partial folder that `get_last_checkpoint` (and `--resume`) would then pick. The mixin below lets the
Trainer write into a hidden staging folder and renames it into place once everything is on disk;
a rename within one filesystem is atomic.
"""

from __future__ import annotations

import os
import shutil

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from transformers.trainer_utils import rotate_checkpoints as _rotate_checkpoints

STAGING_PREFIX = ".staging-"


class AtomicCheckpointMixin:
    """Mix into a `transformers.Trainer` subclass (before the Trainer) for atomic checkpoints."""

    _checkpoint_root: str | None = None

    def _get_output_dir(self, trial):
        return self._checkpoint_root or super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial):
        final_root = super()._get_output_dir(trial)
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        staging_root = os.path.join(final_root, STAGING_PREFIX + name)
        self._checkpoint_root = staging_root
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._checkpoint_root = None
        self.accelerator.wait_for_everyone()  # every rank has written its part (optimizer shards, RNG)
        if self.args.should_save:
            target = os.path.join(final_root, name)
            if os.path.isdir(target):
                shutil.rmtree(target)
            _fsync_tree(os.path.join(staging_root, name))
            os.replace(os.path.join(staging_root, name), target)
            shutil.rmtree(staging_root, ignore_errors=True)
            _rotate_checkpoints(
                output_dir=final_root,
                save_total_limit=self.args.save_total_limit,
                best_model_checkpoint=self.state.best_model_checkpoint,
                use_mtime=True,
            )
        self.accelerator.wait_for_everyone()


def _fsync_tree(folder: str) -> None:
    """Flush every file of the checkpoint to disk before it is renamed into place."""
    for root, _, files in os.walk(folder):
        for name in files:
            with open(os.path.join(root, name), "rb") as handle:
                os.fsync(handle.fileno())
