"""Loading a saved UniCode folder for inference, with errors that name the folder and the fix.

The CLI's model commands, the evaluation and the Space all start here.
"""

from __future__ import annotations

import os

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoProcessor


class ModelFolderError(ValueError):
    """The folder is not a usable UniCode model folder (missing, not UniCode, or without its visual tokenizer)."""


class MissingModelFolderError(ModelFolderError, FileNotFoundError):
    """No folder at that path."""


def load_unicode_folder(model_folder: str | os.PathLike, device: str | torch.device | None = None):
    """(model, processor) from a UniCode folder, or an error that names the folder and says what is wrong."""
    folder = os.fspath(model_folder)
    if not os.path.isdir(folder):
        raise MissingModelFolderError(
            f"No model folder at {folder!r}. Give a folder holding a UniCode model and its processor (written by "
            "model.save_pretrained(folder) and processor.save_pretrained(folder), or by `transformers-unicode "
            "quickstart` into runs/quickstart/model)."
        )
    try:
        config = AutoConfig.from_pretrained(folder)
    except (OSError, ValueError) as error:
        raise ModelFolderError(
            f"{folder!r} is not a UniCode model folder: its config.json cannot be read ({error})."
        ) from error
    if config.model_type != "unicode":
        raise ModelFolderError(
            f"{folder!r} holds a {config.model_type!r} model, not a UniCode model (model_type 'unicode'); assemble "
            "one with UniCodeForCausalLM.from_llm and save it with its processor."
        )
    model = AutoModelForCausalLM.from_pretrained(folder)
    processor = AutoProcessor.from_pretrained(folder)
    if getattr(processor, "visual_tokenizer", None) is None:
        raise ModelFolderError(
            f"{folder!r} has no visual_tokenizer/ subfolder, so its processor cannot read or draw images; save the "
            "processor with processor.save_pretrained(folder)."
        )
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return model.to(device).eval(), processor


__all__ = ["MissingModelFolderError", "ModelFolderError", "load_unicode_folder"]
