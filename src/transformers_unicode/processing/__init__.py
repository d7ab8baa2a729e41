from .image_processing_unicode import UniCodeImageProcessor
from .processing_unicode import UniCodeProcessor
from .tokenization_unicode import CHAT_TEMPLATE, UniCodeTokenizer

__all__ = ["CHAT_TEMPLATE", "UniCodeImageProcessor", "UniCodeProcessor", "UniCodeTokenizer"]
