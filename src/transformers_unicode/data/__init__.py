"""Embedded, download-free image data sets: OpenMoji renders (the default) and sklearn digits."""

from .digits import DIGITS_SPLITS, load_digits_images
from .openmoji import (
    OPENMOJI_ATTRIBUTION,
    OPENMOJI_LICENSE,
    OPENMOJI_SPLITS,
    emoji_groups,
    load_openmoji,
    openmoji_font_path,
    openmoji_records,
    render_emoji,
)

__all__ = [
    "DIGITS_SPLITS",
    "OPENMOJI_ATTRIBUTION",
    "OPENMOJI_LICENSE",
    "OPENMOJI_SPLITS",
    "emoji_groups",
    "load_digits_images",
    "load_openmoji",
    "openmoji_font_path",
    "openmoji_records",
    "render_emoji",
]
