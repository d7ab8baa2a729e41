"""transformers_unicode: UniCode for the Hugging Face ecosystem.

A visual tokenizer whose codes are token ids of any causal LM (its input-embedding table is the
codebook), trained with language-driven iterative codebook updates.
"""

from transformers import AutoConfig, AutoModel

from .modeling import *  # noqa: F401,F403
from .modeling import UniCodeVisualTokenizer, UniCodeVisualTokenizerConfig
from .training.callbacks import CodebookSyncCallback  # noqa: F401

__version__ = "0.1.0"

# Registration at import, so AutoConfig / AutoModel resolve our model types.
AutoConfig.register(UniCodeVisualTokenizerConfig.model_type, UniCodeVisualTokenizerConfig, exist_ok=True)
AutoModel.register(UniCodeVisualTokenizerConfig, UniCodeVisualTokenizer, exist_ok=True)
