"""transformers_unicode: UniCode for the Hugging Face ecosystem.

A visual tokenizer whose codes are token ids of any causal LM (its input-embedding table is the
codebook), trained with language-driven iterative codebook updates.
"""

from transformers import AutoConfig, AutoModel

from .data import load_digits_images, load_openmoji, render_emoji
from .evaluation import evaluate_reconstruction, psnr, ssim
from .modeling import (
    HierarchicalQuantizer,
    MultiCodebookQuantizer,
    ResidualQuantizer,
    UniCodeAttentionProjection,
    UniCodePatchDiscriminator,
    UniCodeQuantizer,
    UniCodeVisualTokenizer,
    UniCodeVisualTokenizerConfig,
    UniCodeVisualTokenizerEncoderOutput,
    UniCodeVisualTokenizerOutput,
    UniCodeVisualTokenizerPreTrainedModel,
    UnifiedCodebook,
    VectorQuantizer,
    build_quantizer,
    default_visual_ids,
    embedded_llm_location,
    input_embedding_table,
    load_llm,
    nearest_code_search,
)
from .training.callbacks import CodebookSyncCallback
from .training.stage1 import (
    TokenizerTrainerArguments,
    TokenizerTrainingArguments,
    UniCodeTokenizerTrainer,
    train_tokenizer,
)

__version__ = "0.1.0"

# Registration at import, so AutoConfig / AutoModel resolve our model types.
AutoConfig.register(UniCodeVisualTokenizerConfig.model_type, UniCodeVisualTokenizerConfig, exist_ok=True)
AutoModel.register(UniCodeVisualTokenizerConfig, UniCodeVisualTokenizer, exist_ok=True)

__all__ = [
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
