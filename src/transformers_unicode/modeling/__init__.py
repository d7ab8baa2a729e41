from .configuration_unicode import PACKED_CODE_OFFSET, UniCodeConfig, UniCodeVisualTokenizerConfig
from .generation_unicode import UniCodeImageSpanLogitsProcessor
from .llm_utils import default_visual_ids, embedded_llm_location, input_embedding_table, load_llm
from .modeling_unicode import UniCodeForCausalLM, UniCodeModel, UniCodePreTrainedModel
from .modeling_visual_tokenizer import (
    UniCodeAttentionProjection,
    UniCodePatchDiscriminator,
    UniCodeVisualTokenizer,
    UniCodeVisualTokenizerEncoderOutput,
    UniCodeVisualTokenizerOutput,
    UniCodeVisualTokenizerPreTrainedModel,
)
from .quantization_unicode import (
    HierarchicalQuantizer,
    MultiCodebookQuantizer,
    ResidualQuantizer,
    UniCodeQuantizer,
    UnifiedCodebook,
    VectorQuantizer,
    aggregate_code_embeddings,
    build_quantizer,
    code_entropy_loss,
    nearest_code_search,
)
