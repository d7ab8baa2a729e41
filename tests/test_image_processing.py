"""UniCodeImageProcessor: each PIL mode to the right RGB, training-exact pixels, round trips, clear errors."""

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoImageProcessor, PreTrainedConfig
from transformers.models.auto.image_processing_auto import IMAGE_PROCESSOR_MAPPING

from transformers_unicode.processing.image_processing_unicode import UniCodeImageProcessor
from transformers_unicode.training.stage1 import images_to_pixels

WHITE = (255, 255, 255)


@pytest.fixture
def processor():
    return UniCodeImageProcessor()


def rgb_at(processor, image, **kwargs):
    """The RGB value of the output's top-left pixel, mapped back to 0..255."""
    pixels = processor(image, return_tensors="pt", **kwargs).pixel_values
    return processor.postprocess(pixels, output_type="np")[0, 0, 0].tolist()


def noise(mode="RGB", size=(64, 64), seed=0):
    channels = len(Image.new(mode, (1, 1)).getbands())
    array = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    return Image.fromarray(array.squeeze(-1) if channels == 1 else array, mode)


def png_bytes(image, **save_kwargs):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **save_kwargs)
    return buffer.getvalue()


def filled(mode, value, size=(4, 4)):
    return Image.new(mode, size, value)


def palette_image(mode, value, transparency=None):
    """A red (index 0) and blue (index 1) palette, filled with `value`: an index, or (index, alpha) for PA."""
    image = filled(mode, value)
    image.putpalette([255, 0, 0, 0, 0, 255])
    if transparency is not None:
        image.info["transparency"] = transparency
    return image


# (case, image, expected RGB)   tolerance 1 everywhere: alpha compositing rounds either way
MODE_CASES = [
    ("RGB", filled("RGB", (10, 20, 30)), (10, 20, 30)),
    ("RGBA half red", filled("RGBA", (255, 0, 0, 128)), (255, 128, 128)),
    ("RGBA transparent", filled("RGBA", (0, 0, 0, 0)), WHITE),
    ("RGBA opaque", filled("RGBA", (1, 2, 3, 255)), (1, 2, 3)),
    ("RGBa premultiplied", filled("RGBa", (128, 0, 0, 128)), (255, 128, 128)),
    ("LA half black", filled("LA", (0, 128)), (128, 128, 128)),
    ("La premultiplied", filled("La", (0, 128)), (128, 128, 128)),
    ("PA half red", palette_image("PA", (0, 128)), (255, 128, 128)),
    ("P opaque", palette_image("P", 1), (0, 0, 255)),
    ("P transparent index", palette_image("P", 0, transparency=0), WHITE),
    ("L", filled("L", 77), (77, 77, 77)),
    ("1 white", filled("1", 1), WHITE),
    ("1 black", filled("1", 0), (0, 0, 0)),
    ("CMYK black", filled("CMYK", (0, 0, 0, 255)), (0, 0, 0)),
    ("CMYK magenta", filled("CMYK", (0, 255, 0, 0)), (255, 0, 255)),
    ("YCbCr white", filled("YCbCr", (255, 128, 128)), WHITE),
    ("HSV white", filled("HSV", (0, 0, 255)), WHITE),
    ("I;16 max", Image.fromarray(np.full((4, 4), 65535, np.uint16)), WHITE),
    ("I;16 mid", Image.fromarray(np.full((4, 4), 257 * 100, np.uint16)), (100, 100, 100)),
    ("I;16B max", filled("I;16B", 65535), WHITE),
    ("I;16B mid", filled("I;16B", 257 * 100), (100, 100, 100)),
    ("I;16L mid", filled("I;16L", 257 * 200), (200, 200, 200)),
    ("I 16-bit range", filled("I", 257 * 100), (100, 100, 100)),
    ("I above range clips", filled("I", 70000), WHITE),
    ("I negative clips", filled("I", -5), (0, 0, 0)),
    ("F in [0, 1]", filled("F", 0.5), (128, 128, 128)),
    ("F one", filled("F", 1.0), WHITE),
    ("F in [0, 255]", filled("F", 200.0), (200, 200, 200)),
]


@pytest.mark.parametrize("image, expected", [c[1:] for c in MODE_CASES], ids=[c[0] for c in MODE_CASES])
def test_every_mode_converts_to_the_expected_rgb(processor, image, expected):
    assert np.abs(np.array(rgb_at(processor, image)) - np.array(expected)).max() <= 1


def test_background_color_is_configurable(processor):
    image = filled("RGBA", (0, 0, 0, 0))
    assert rgb_at(processor, image, background_color=(0, 64, 0)) == [0, 64, 0]
    assert rgb_at(UniCodeImageProcessor(background_color=[10, 20, 30]), image) == [10, 20, 30]


def exif_image_bytes(fmt):
    """Wide, left half red, right half blue, tagged Orientation 6 (display rotated 90 deg clockwise)."""
    image = Image.new("RGB", (4, 2), (255, 0, 0))
    image.paste((0, 0, 255), (2, 0, 4, 2))
    image = image.resize((64, 32), Image.NEAREST)
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, exif=exif, **({"quality": 95} if fmt == "JPEG" else {}))
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
@pytest.mark.parametrize("source", ["pil", "bytes", "path"])
def test_exif_orientation_is_applied(processor, tmp_path, fmt, source):
    data = exif_image_bytes(fmt)
    if source == "pil":
        image = Image.open(io.BytesIO(data))
    elif source == "bytes":
        image = data
    else:
        image = tmp_path / f"rotated.{fmt.lower()}"
        image.write_bytes(data)
    pixels = processor(image, do_resize=False, do_center_crop=False).pixel_values
    assert pixels.shape == (1, 3, 64, 32)  # (B, 3, H, W): the 64x32 landscape now stands upright
    rgb = processor.postprocess(pixels, output_type="np")[0]
    # Rotating clockwise puts the left (red) half on top.
    assert np.abs(rgb[8, 16].astype(int) - (255, 0, 0)).max() <= 8
    assert np.abs(rgb[56, 16].astype(int) - (0, 0, 255)).max() <= 8


def three_bands(width, height, horizontal):
    """Red | green | blue bands along the long side; the middle half is green."""
    image = Image.new("RGB", (width, height), (0, 255, 0))
    if horizontal:
        image.paste((255, 0, 0), (0, 0, width // 4, height))
        image.paste((0, 0, 255), (3 * width // 4, 0, width, height))
    else:
        image.paste((255, 0, 0), (0, 0, width, height // 4))
        image.paste((0, 0, 255), (0, 3 * height // 4, width, height))
    return image


def test_shortest_edge_resize_then_centre_crop_keeps_the_aspect(processor):
    tall = three_bands(64, 128, horizontal=False)  # already 64 on the shortest edge: a pure crop
    rgb = processor.postprocess(processor(tall).pixel_values, output_type="np")[0]
    assert rgb.shape == (64, 64, 3)
    assert (rgb == (0, 255, 0)).all()

    wide = three_bands(256, 128, horizontal=True)  # halved to 128x64, then cropped to the green middle
    rgb = processor.postprocess(processor(wide).pixel_values, output_type="np")[0]
    assert rgb.shape == (64, 64, 3)
    assert np.abs(rgb[:, 2:-2].astype(int) - (0, 255, 0)).max() <= 2

    stretched = processor.postprocess(processor(tall, do_center_crop=False).pixel_values, output_type="np")[0]
    assert (stretched[0] == (255, 0, 0)).all() and (stretched[-1] == (0, 0, 255)).all()


@pytest.mark.parametrize("mode, side", [("RGBA", 50), ("RGBA", 64), ("RGBA", 97), ("P", 40), ("LA", 80)])
def test_square_images_match_stage1_images_to_pixels_exactly(processor, mode, side):
    image = noise("RGBA", (side, side), seed=side).convert(mode)
    expected = images_to_pixels([image], 64)
    pixels = processor(image, return_tensors="pt").pixel_values
    assert pixels.dtype == torch.float32
    assert torch.equal(pixels, expected)
    assert pixels.min() >= -1 and pixels.max() <= 1


def test_batch_and_return_types(processor):
    images = [noise(seed=1), noise(seed=2), noise("L", (30, 40), seed=3)]
    as_numpy = processor(images).pixel_values
    assert (
        isinstance(as_numpy, np.ndarray) and as_numpy.shape == (3, 3, 64, 64) and as_numpy.dtype == np.float32
    )
    as_torch = processor.preprocess(images, return_tensors="pt")["pixel_values"]
    assert torch.equal(as_torch, torch.from_numpy(as_numpy))
    assert processor(images, size={"height": 32, "width": 48}).pixel_values.shape == (3, 3, 32, 48)


RGB_UINT8 = np.random.default_rng(7).integers(0, 256, (40, 40, 3), dtype=np.uint8)
ARRAY_INPUTS = [
    ("numpy HWC uint8", lambda: RGB_UINT8),
    ("numpy CHW uint8", lambda: RGB_UINT8.transpose(2, 0, 1)),
    ("numpy HWC float in [0, 1]", lambda: RGB_UINT8 / 255.0),
    ("numpy HWC float32", lambda: (RGB_UINT8 / 255.0).astype(np.float32)),
    ("numpy HWC uint16", lambda: RGB_UINT8.astype(np.uint16) * 257),
    ("torch CHW uint8", lambda: torch.from_numpy(RGB_UINT8).permute(2, 0, 1)),
    ("torch CHW float", lambda: torch.from_numpy(RGB_UINT8).permute(2, 0, 1) / 255.0),
    ("torch CHW int64", lambda: torch.from_numpy(RGB_UINT8).permute(2, 0, 1).long()),
    ("torch HWC uint8", lambda: torch.from_numpy(RGB_UINT8)),
    ("batched torch BCHW", lambda: torch.from_numpy(RGB_UINT8).permute(2, 0, 1)[None]),
    ("list of one array", lambda: [RGB_UINT8]),
    ("nested list", lambda: [[Image.fromarray(RGB_UINT8)]]),
    ("PNG bytes", lambda: png_bytes(Image.fromarray(RGB_UINT8))),
]


@pytest.mark.parametrize("make_input", [c[1] for c in ARRAY_INPUTS], ids=[c[0] for c in ARRAY_INPUTS])
def test_every_input_type_gives_the_same_pixels(processor, make_input):
    expected = processor(Image.fromarray(RGB_UINT8)).pixel_values
    np.testing.assert_array_equal(processor(make_input()).pixel_values, expected)


def test_gray_arrays_and_paths(processor, tmp_path):
    gray = RGB_UINT8[..., 0]
    expected = processor(Image.fromarray(gray, "L")).pixel_values
    np.testing.assert_array_equal(processor(gray).pixel_values, expected)
    mask = gray > 127
    as_l = Image.fromarray(mask.astype(np.uint8) * 255, "L")
    np.testing.assert_array_equal(processor(mask).pixel_values, processor(as_l).pixel_values)

    path = tmp_path / "image.png"
    Image.fromarray(RGB_UINT8).save(path)
    expected = processor(Image.fromarray(RGB_UINT8)).pixel_values
    np.testing.assert_array_equal(processor(path).pixel_values, expected)
    np.testing.assert_array_equal(processor(str(path)).pixel_values, expected)


def test_postprocess_inverts_preprocess(processor):
    image = noise(seed=11)
    pixels = processor(image, return_tensors="pt").pixel_values
    (restored,) = processor.postprocess(pixels)
    assert restored.mode == "RGB" and restored.size == (64, 64)
    assert np.abs(np.asarray(restored, dtype=int) - np.asarray(image, dtype=int)).max() <= 1

    as_array = processor.postprocess(pixels[0].numpy(), output_type="np")  # (3, H, W) is accepted too
    assert as_array.shape == (1, 64, 64, 3) and as_array.dtype == np.uint8
    np.testing.assert_array_equal(as_array[0], np.asarray(restored))

    clamped = processor.postprocess(torch.tensor([-3.0, 0.0, 3.0]).view(1, 3, 1, 1).expand(1, 3, 2, 2), "np")
    assert clamped[0, 0, 0].tolist() == [0, 128, 255]


def test_save_pretrained_from_pretrained_round_trip(tmp_path):
    processor = UniCodeImageProcessor(size={"height": 32, "width": 48}, background_color=(0, 0, 0))
    processor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert saved["image_processor_type"] == "UniCodeImageProcessor"
    assert saved["background_color"] == [0, 0, 0] and saved["size"] == {"height": 32, "width": 48}

    reloaded = UniCodeImageProcessor.from_pretrained(tmp_path)
    assert reloaded.to_dict() == processor.to_dict()
    image = filled("RGBA", (255, 0, 0, 128), size=(10, 10))
    np.testing.assert_array_equal(reloaded(image).pixel_values, processor(image).pixel_values)
    assert UniCodeImageProcessor.from_pretrained(tmp_path, size=16).size.height == 16


class _ImageProcessorTestConfig(PreTrainedConfig):
    model_type = "unicode-image-processor-test"


@pytest.fixture
def registered():
    AutoImageProcessor.register(
        _ImageProcessorTestConfig, image_processor_classes={"pil": UniCodeImageProcessor}, exist_ok=True
    )
    yield
    IMAGE_PROCESSOR_MAPPING._extra_content.pop(_ImageProcessorTestConfig, None)


def test_auto_image_processor_loads_it_once_registered_as_pil(registered, tmp_path):
    UniCodeImageProcessor(size={"height": 24, "width": 24}).save_pretrained(tmp_path)
    loaded = AutoImageProcessor.from_pretrained(tmp_path)
    assert type(loaded) is UniCodeImageProcessor and loaded.size.height == 24


def tiny_png(tmp_path, name="image.png", side=64):
    path = tmp_path / name
    noise(size=(side, side)).save(path)
    return path


def truncated_png(tmp_path):
    data = png_bytes(noise(size=(64, 64)))
    path = tmp_path / "truncated.png"
    path.write_bytes(data[: len(data) // 2])
    return path


def text_as_png(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is not an image\n")
    return path


# (case, make input from tmp_path, message pattern)
BAD_INPUTS = [
    ("1x1 image", lambda p: Image.new("RGB", (1, 1)), r"1x1 pixels; images must be at least 2x2"),
    ("1x5 image", lambda p: Image.new("RGBA", (1, 5)), r"1x5 pixels.*at least 2x2"),
    ("1x1 array", lambda p: np.zeros((1, 1, 3), np.uint8), r"1x1 pixels.*at least 2x2"),
    ("truncated PNG path", truncated_png, r"truncated or corrupt"),
    ("truncated PNG bytes", lambda p: truncated_png(p).read_bytes(), r"truncated or corrupt"),
    ("truncated PNG opened by the user", lambda p: Image.open(truncated_png(p)), r"truncated or corrupt"),
    ("text file named .png", text_as_png, r"not an image file"),
    ("text bytes", lambda p: b"hello", r"not an image file"),
    ("missing file", lambda p: p / "missing.png", r"No image file"),
    ("a folder", lambda p: p, r"No image file"),
    ("a URL", lambda p: "https://example.com/cat.png", r"URL"),
    ("empty list", lambda p: [], r"empty list"),
    ("list of empty lists", lambda p: [[], []], r"empty list"),
    ("1-D array", lambda p: np.zeros(5, np.uint8), r"shape \(5,\)"),
    ("5-D array", lambda p: np.zeros((1, 1, 4, 4, 3), np.uint8), r"shape \(1, 1, 4, 4, 3\)"),
    ("five channels", lambda p: np.zeros((8, 8, 5), np.uint8), r"5 channels"),
    ("complex dtype", lambda p: np.zeros((8, 8, 3), np.complex64), r"dtype complex64"),
    ("float outside [0, 1]", lambda p: np.full((8, 8, 3), -0.5, np.float32), r"expected \[0, 1\]"),
    ("float NaN", lambda p: np.full((8, 8, 3), np.nan), r"NaN"),
    ("int out of 0..255", lambda p: np.full((8, 8, 3), 300, np.int64), r"expected 0\.\.255"),
    ("F with NaN", lambda p: Image.fromarray(np.full((4, 4), np.nan, np.float32)), r"NaN"),
    ("an int", lambda p: 42, r"Unsupported image type int"),
    ("a dict", lambda p: {"image": 1}, r"Unsupported image type dict"),
]


@pytest.mark.parametrize("make_input, match", [c[1:] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS])
def test_bad_inputs_raise_a_clear_value_error(processor, tmp_path, make_input, match):
    with pytest.raises(ValueError, match=match) as excinfo:
        processor(make_input(tmp_path))
    assert excinfo.value.__cause__ is None  # no chained stack trace from inside PIL or numpy


@pytest.mark.parametrize("limit", [1000, 3000], ids=["over twice the limit", "between the limit and twice"])
@pytest.mark.parametrize("source", ["pil", "path", "bytes"])
def test_decompression_bombs_are_refused_before_decoding(processor, tmp_path, monkeypatch, limit, source):
    path = tiny_png(tmp_path)  # 64 x 64 = 4096 pixels
    image = {"pil": lambda: Image.open(path), "path": lambda: path, "bytes": path.read_bytes}[source]()
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    with pytest.raises(ValueError, match=r"MAX_IMAGE_PIXELS"):
        processor(image)


def test_decompression_bomb_array(processor, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ValueError, match=r"16x16 = 256 pixels, over PIL.Image.MAX_IMAGE_PIXELS \(100\)"):
        processor(np.zeros((16, 16, 3), np.uint8))


def test_bad_settings_raise_a_clear_value_error(processor):
    with pytest.raises(ValueError, match=r"do_convert_rgb=False"):
        processor(filled("RGBA", (0, 0, 0, 0)), do_convert_rgb=False)
    with pytest.raises(ValueError, match=r"background_color must be three integers"):
        UniCodeImageProcessor(background_color=(0, 0, 300))
    with pytest.raises(ValueError, match=r"needs a `crop_size`"):
        processor(noise(), size={"shortest_edge": 32})
    assert processor(noise(), size={"shortest_edge": 32}, crop_size=32).pixel_values.shape == (1, 3, 32, 32)
    with pytest.raises(ValueError, match=r"different shapes"):
        processor(
            [noise(size=(8, 8)), noise(size=(9, 9))],
            do_resize=False,
            do_center_crop=False,
            return_tensors="pt",
        )


def test_postprocess_rejects_bad_input(processor):
    with pytest.raises(ValueError, match=r"shape \(batch_size, 3, height, width\)"):
        processor.postprocess(np.zeros((1, 4, 8, 8)))
    with pytest.raises(ValueError, match=r"output_type must be 'pil' or 'np'"):
        processor.postprocess(np.zeros((1, 3, 8, 8)), output_type="pt")
    with pytest.raises(ValueError, match=r"NaN"):
        processor.postprocess(np.full((3, 8, 8), np.nan))
    with pytest.raises(ValueError, match=r"torch tensor or numpy array"):
        processor.postprocess([[0.0]])
