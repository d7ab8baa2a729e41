"""transformers_unicode: UniCode for the Hugging Face ecosystem.

A visual tokenizer whose codes are token ids of any causal LM (its input-embedding table is the
codebook), trained with language-driven iterative codebook updates.
"""

import importlib

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoProcessor,
    AutoTokenizer,
)

from .assembly import register_unicode_assembly
from .data import emoji_groups, load_digits_images, load_openmoji, render_emoji
from .data.conversations import (
    InvalidRecordError,
    conversations_to_dataset,
    load_llava_conversations,
    load_text_to_image_pairs,
)
from .data.openmoji_conversations import openmoji_conversations
from .evaluation import evaluate_reconstruction, load_metric, psnr, ssim
from .evaluation.suite import EvaluationArguments, evaluate_unicode
from .loading import load_unicode_folder
from .modeling import (
    PACKED_CODE_OFFSET,
    HierarchicalQuantizer,
    MultiCodebookQuantizer,
    ResidualQuantizer,
    UniCodeAttentionProjection,
    UniCodeConfig,
    UniCodeForCausalLM,
    UniCodeImageSpanLogitsProcessor,
    UniCodeModel,
    UniCodePatchDiscriminator,
    UniCodePreTrainedModel,
    UniCodeQuantizer,
    UniCodeVisualTokenizer,
    UniCodeVisualTokenizerConfig,
    UniCodeVisualTokenizerEncoderOutput,
    UniCodeVisualTokenizerOutput,
    UniCodeVisualTokenizerPreTrainedModel,
    UnifiedCodebook,
    VectorQuantizer,
    aggregate_code_embeddings,
    build_quantizer,
    code_entropy_loss,
    default_visual_ids,
    embedded_llm_location,
    input_embedding_table,
    load_llm,
    nearest_code_search,
)
from .pipeline_text_to_image import UniCodeTextToImagePipeline
from .processing import CHAT_TEMPLATE, UniCodeImageProcessor, UniCodeProcessor, UniCodeTokenizer
from .training.ablation import AblationArguments, run_ablation
from .training.callbacks import CodebookSyncCallback, TimeBudgetCallback
from .training.collator import UniCodeDataCollator
from .training.quickstart import QuickstartArguments, run_quickstart
from .training.sft_data import (
    build_decompression_dataset,
    decompression_sample,
    encode_conversation,
    mix_datasets,
    tokenize_conversations,
)
from .training.stage1 import (
    TokenizerTrainerArguments,
    TokenizerTrainingArguments,
    UniCodeTokenizerTrainer,
    train_tokenizer,
)

__version__ = "0.1.0"

register_unicode_assembly()  # UniCodeForCausalLM.from_llm(..., return_processor=True) builds its processor here

# Stage II's recipe needs TRL (the `train` extra), so it is imported on first use, not with the package.
_LAZY = {
    "SFTScriptArguments": ".training.stage2",
    "UniCodeSFTTrainer": ".training.stage2",
    "run_sft": ".training.stage2",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Registration at import, so the Auto classes and pipelines resolve our model types.
AutoConfig.register(UniCodeVisualTokenizerConfig.model_type, UniCodeVisualTokenizerConfig, exist_ok=True)
AutoModel.register(UniCodeVisualTokenizerConfig, UniCodeVisualTokenizer, exist_ok=True)
AutoConfig.register(UniCodeConfig.model_type, UniCodeConfig, exist_ok=True)
AutoModel.register(UniCodeConfig, UniCodeModel, exist_ok=True)
AutoModelForCausalLM.register(UniCodeConfig, UniCodeForCausalLM, exist_ok=True)
AutoModelForImageTextToText.register(UniCodeConfig, UniCodeForCausalLM, exist_ok=True)
AutoImageProcessor.register(
    UniCodeConfig, image_processor_classes={"pil": UniCodeImageProcessor}, exist_ok=True
)
AutoTokenizer.register(UniCodeConfig, fast_tokenizer_class=UniCodeTokenizer, exist_ok=True)
AutoProcessor.register(UniCodeConfig, UniCodeProcessor, exist_ok=True)

# And for trust_remote_code: save_pretrained copies the defining files and writes `auto_map`, so a saved
# folder loads in a process where this package is not installed. One Auto class per class here; the model's
# save_pretrained adds the others it is registered under above (AutoModel, AutoModelForImageTextToText).
UniCodeVisualTokenizerConfig.register_for_auto_class()
UniCodeVisualTokenizer.register_for_auto_class("AutoModel")
UniCodeConfig.register_for_auto_class()
UniCodeForCausalLM.register_for_auto_class("AutoModelForCausalLM")
UniCodeImageProcessor.register_for_auto_class("AutoImageProcessor")
UniCodeTokenizer.register_for_auto_class("AutoTokenizer")
UniCodeProcessor.register_for_auto_class("AutoProcessor")

__all__ = [
    "AblationArguments",
    "CHAT_TEMPLATE",
    "EvaluationArguments",
    "QuickstartArguments",
    "TimeBudgetCallback",
    "evaluate_unicode",
    "load_metric",
    "load_unicode_folder",
    "run_ablation",
    "run_quickstart",
    "InvalidRecordError",
    "SFTScriptArguments",
    "UniCodeDataCollator",
    "UniCodeSFTTrainer",
    "build_decompression_dataset",
    "conversations_to_dataset",
    "decompression_sample",
    "emoji_groups",
    "encode_conversation",
    "load_llava_conversations",
    "load_text_to_image_pairs",
    "mix_datasets",
    "openmoji_conversations",
    "run_sft",
    "tokenize_conversations",
    "PACKED_CODE_OFFSET",
    "UniCodeConfig",
    "UniCodeForCausalLM",
    "UniCodeImageProcessor",
    "UniCodeImageSpanLogitsProcessor",
    "UniCodeModel",
    "UniCodePreTrainedModel",
    "UniCodeProcessor",
    "UniCodeTextToImagePipeline",
    "UniCodeTokenizer",
    "aggregate_code_embeddings",
    "CodebookSyncCallback",
    "HierarchicalQuantizer",
    "MultiCodebookQuantizer",
    "ResidualQuantizer",
    "TokenizerTrainerArguments",
    "TokenizerTrainingArguments",
    "UniCodeAttentionProjection",
    "UniCodePatchDiscriminator",
    "UniCodeQuantizer",
    "UniCodeTokenizerTrainer",
    "UniCodeVisualTokenizer",
    "UniCodeVisualTokenizerConfig",
    "UniCodeVisualTokenizerEncoderOutput",
    "UniCodeVisualTokenizerOutput",
    "UniCodeVisualTokenizerPreTrainedModel",
    "UnifiedCodebook",
    "VectorQuantizer",
    "build_quantizer",
    "code_entropy_loss",
    "default_visual_ids",
    "embedded_llm_location",
    "evaluate_reconstruction",
    "input_embedding_table",
    "load_digits_images",
    "load_llm",
    "load_openmoji",
    "nearest_code_search",
    "psnr",
    "render_emoji",
    "ssim",
    "train_tokenizer",
]
