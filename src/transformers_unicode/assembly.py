"""Where the two layers meet: the image markers and the processor of a UniCode model assembled from an LLM.

`modeling/` never imports `processing/`: a `trust_remote_code` copy of the model code loads models, it never
assembles one, and must not need the processor's files. Yet `UniCodeForCausalLM.from_llm(...,
return_processor=True)` is a convenience worth keeping. So the package registers these two builders with the
model class when it is imported (`register_unicode_assembly`, called from `transformers_unicode/__init__.py`),
and `from_llm` calls whatever is registered.
"""

from __future__ import annotations

from .modeling.modeling_unicode import UniCodeForCausalLM
from .processing import UniCodeImageProcessor, UniCodeProcessor, UniCodeTokenizer


def unicode_tokenizer(tokenizer) -> UniCodeTokenizer:
    """The LLM's tokenizer with the three image markers (a `UniCodeTokenizer` is returned as it is)."""
    return (
        tokenizer
        if isinstance(tokenizer, UniCodeTokenizer)
        else UniCodeTokenizer.from_llm_tokenizer(tokenizer)
    )


def unicode_processor(visual_tokenizer, tokenizer: UniCodeTokenizer) -> UniCodeProcessor:
    """The processor matching a model: the tokenizer's markers, images at the visual tokenizer's size."""
    size = visual_tokenizer.config.image_size
    return UniCodeProcessor(
        image_processor=UniCodeImageProcessor(size={"height": size, "width": size}),
        tokenizer=tokenizer,
        visual_tokenizer=visual_tokenizer,
    )


def register_unicode_assembly() -> None:
    UniCodeForCausalLM.assembly = {"tokenizer": unicode_tokenizer, "processor": unicode_processor}


__all__ = ["register_unicode_assembly", "unicode_processor", "unicode_tokenizer"]
