"""Image processor for UniCode: any image a user hands in -> the pixels the Stage I tokenizer was trained on.

The visual tokenizer was trained on `training.stage1.images_to_pixels`: transparent images composited on
white, RGB, bicubic resize to `image_size` x `image_size`, then `x / 127.5 - 1`. This processor reproduces
that exactly for square images (the defaults below are the same numbers, spelled as HF image-processor
settings), keeps the aspect ratio of non-square ones by resizing the shortest edge and centre-cropping, and
turns every PIL mode, array layout and broken file into either RGB pixels or a `ValueError` that says what
to do.

It is built on transformers' `PilBackend` (numpy + PIL), so it needs no torchvision.
"""

import io
import os
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from transformers.image_processing_backends import PilBackend
from transformers.image_processing_base import BatchFeature
from transformers.image_utils import (
    ChannelDimension,
    ImageInput,
    PILImageResampling,
    SizeDict,
    is_torch_tensor,
)
from transformers.processing_utils import ImagesKwargs, Unpack
from transformers.utils import TensorType, logging

logger = logging.get_logger(__name__)

# Smaller than this on a side, bicubic resampling and centre cropping have nothing to work with.
MIN_IMAGE_SIDE = 2

# Modes whose alpha (or palette transparency) must be composited on the background, and the mode PIL can
# convert each of them to RGBA through ("La" has no direct route to RGBA, only to "LA").
_ALPHA_MODES = {"RGBA": "RGBA", "RGBa": "RGBA", "LA": "RGBA", "La": "LA", "PA": "RGBA", "P": "RGBA"}
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
_CHANNEL_COUNTS_TO_MODE = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


class UniCodeImageProcessorKwargs(ImagesKwargs, total=False):
    r"""
    background_color (`tuple[int, int, int]`, *optional*, defaults to `(255, 255, 255)`):
        The RGB colour transparent pixels are composited on. White, because the Stage I tokenizer was trained
        on emoji composited on white.
    """

    background_color: tuple[int, int, int] | list[int] | None


class UniCodeImageProcessor(PilBackend):
    r"""
    Turns images into the `pixel_values` the UniCode visual tokenizer was trained on, and back.

    Every setting defaults to the Stage I recipe (`training.stage1.images_to_pixels`): a square image comes
    out bit-for-bit as it did in training. A non-square image is resized so its shortest edge fits `size`,
    then centre-cropped, so it is not squashed.

    Args:
        do_convert_rgb (`bool`, *optional*, defaults to `True`):
            Whether to convert every input to RGB (alpha and palette transparency composited on
            `background_color`, 16-bit and float modes scaled to 8 bits). With `False` inputs must already
            be RGB.
        background_color (`tuple[int, int, int]`, *optional*, defaults to `(255, 255, 255)`):
            The colour transparent pixels are composited on.
        do_resize (`bool`, *optional*, defaults to `True`):
            Whether to resize the image.
        size (`dict[str, int]`, *optional*, defaults to `{"height": 64, "width": 64}`):
            The output size. `{"shortest_edge": n}` is also accepted (then `crop_size` is required).
        resample (`PILImageResampling`, *optional*, defaults to `PILImageResampling.BICUBIC`):
            The resampling filter, bicubic as in training.
        do_center_crop (`bool`, *optional*, defaults to `True`):
            Whether to keep the aspect ratio: resize so the image covers `size`, then centre-crop. With
            `False` the image is stretched to `size`. For a square image both give the same pixels.
        crop_size (`dict[str, int]`, *optional*, defaults to `None`):
            Where to centre-crop; `None` crops to `size`.
        do_rescale (`bool`, *optional*, defaults to `True`):
            Whether to rescale 0..255 to 0..1.
        rescale_factor (`float`, *optional*, defaults to `1/255`):
            The rescale factor.
        do_normalize (`bool`, *optional*, defaults to `True`):
            Whether to normalise with `image_mean` and `image_std`.
        image_mean (`tuple[float, float, float]`, *optional*, defaults to `(0.5, 0.5, 0.5)`):
            Mean per channel; with `image_std` 0.5 this maps 0..1 onto -1..1, the tokenizer's input range.
        image_std (`tuple[float, float, float]`, *optional*, defaults to `(0.5, 0.5, 0.5)`):
            Standard deviation per channel.

    Example:

    ```python
    >>> from PIL import Image
    >>> from transformers_unicode.processing.image_processing_unicode import UniCodeImageProcessor

    >>> processor = UniCodeImageProcessor()
    >>> image = Image.new("RGBA", (120, 80), (255, 0, 0, 128))
    >>> pixel_values = processor(image, return_tensors="pt").pixel_values
    >>> pixel_values.shape
    torch.Size([1, 3, 64, 64])
    >>> processor.postprocess(pixel_values)[0].getpixel((0, 0))
    (255, 127, 127)
    ```
    """

    model_input_names = ["pixel_values"]
    valid_kwargs = UniCodeImageProcessorKwargs

    do_convert_rgb = True
    background_color = (255, 255, 255)
    do_resize = True
    size = {"height": 64, "width": 64}
    default_to_square = True
    resample = PILImageResampling.BICUBIC
    do_center_crop = True
    crop_size = None
    do_rescale = True
    rescale_factor = 1 / 255
    do_normalize = True
    image_mean = (0.5, 0.5, 0.5)
    image_std = (0.5, 0.5, 0.5)

    def __init__(self, **kwargs: Unpack[UniCodeImageProcessorKwargs]):
        super().__init__(**kwargs)

    def preprocess(
        self,
        images: ImageInput | str | os.PathLike | bytes,
        return_tensors: str | TensorType | None = None,
        **kwargs: Unpack[UniCodeImageProcessorKwargs],
    ) -> BatchFeature:
        r"""
        Prepare one image or a batch for the visual tokenizer.

        Args:
            images (`PIL.Image.Image`, `np.ndarray`, `torch.Tensor`, `str`, `os.PathLike`, `bytes` or a list):
                PIL images of any mode; numpy arrays `(H, W)`, `(H, W, C)` (or `(C, H, W)`), uint8, uint16,
                bool or float in [0, 1]; torch tensors `(C, H, W)` (or `(H, W, C)`); paths or encoded bytes
                of an image file. A 4-D array or tensor is a batch.
            return_tensors (`str` or `TensorType`, *optional*, defaults to `None`):
                `"pt"` for a torch tensor, `"np"` or `None` for a numpy array.
            **kwargs:
                Any constructor setting, overriding it for this call only.

        Returns:
            [`BatchFeature`]: `pixel_values` of shape `(batch_size, 3, height, width)`, float32, in [-1, 1]
            with the default settings.
        """
        return super().preprocess(images, return_tensors=return_tensors, **kwargs)

    # ----------------------------------------------------------------------------------------------------
    # kwargs

    def _standardize_kwargs(self, background_color=None, **kwargs) -> dict:
        kwargs = super()._standardize_kwargs(**kwargs)
        if background_color is not None:
            background_color = _checked_background_color(background_color)
        kwargs["background_color"] = background_color
        return kwargs

    def _validate_preprocess_kwargs(self, size=None, crop_size=None, do_center_crop=None, **kwargs):
        # `crop_size=None` means "crop to `size`", which the base check does not know about.
        if do_center_crop and crop_size is None:
            if size is None or not (size.height and size.width):
                raise ValueError(
                    f"`do_center_crop=True` with size={dict(size or {})} needs a `crop_size` "
                    '({"height": h, "width": w}); or give `size` as {"height": h, "width": w}.'
                )
            crop_size = size
        super()._validate_preprocess_kwargs(
            size=size, crop_size=crop_size, do_center_crop=do_center_crop, **kwargs
        )

    # ----------------------------------------------------------------------------------------------------
    # inputs -> list of single images -> (3, H, W) uint8 RGB

    def _prepare_images_structure(self, images: Any, expected_ndims: int = 3) -> list:
        """Flatten the input into single images, opening paths and bytes; a clear error for anything else."""
        flat = []
        _flatten_images(images, flat, depth=0)
        if not flat:
            raise ValueError("Got an empty list of images: pass at least one image.")
        return flat

    def process_image(
        self,
        image: Any,
        do_convert_rgb: bool | None = None,
        input_data_format: str | ChannelDimension | None = None,
        background_color: tuple[int, int, int] | None = None,
        **kwargs,
    ) -> np.ndarray:
        """One image -> `(3, H, W)` uint8 RGB. Everything works on 8-bit PIL images, as in training."""
        background_color = self.background_color if background_color is None else background_color
        do_convert_rgb = self.do_convert_rgb if do_convert_rgb is None else do_convert_rgb
        if isinstance(image, Image.Image):
            image = _prepared_pil_image(image)
        else:
            image = _array_to_pil(image, input_data_format)
        if do_convert_rgb:
            image = _pil_to_rgb(image, background_color)
        elif image.mode != "RGB":
            raise ValueError(
                f"Got a {image.mode!r} image with do_convert_rgb=False; the tokenizer needs RGB. "
                "Pass do_convert_rgb=True or convert the image to RGB first."
            )
        return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)  # (3, H, W)

    # ----------------------------------------------------------------------------------------------------
    # (3, H, W) uint8 -> pixel_values

    def _preprocess(
        self,
        images: list[np.ndarray],
        do_resize: bool,
        size: SizeDict,
        resample: PILImageResampling | None,
        do_center_crop: bool,
        crop_size: SizeDict | None,
        do_rescale: bool,
        rescale_factor: float,
        do_normalize: bool,
        image_mean: float | Iterable[float] | None,
        image_std: float | Iterable[float] | None,
        return_tensors: str | TensorType | None = None,
        **kwargs,
    ) -> BatchFeature:
        """Resize (keeping the aspect when cropping), crop, rescale, normalise, stack."""
        crop_size = crop_size if crop_size is not None else size
        processed = []
        for image in images:
            if do_resize:
                target = size
                if do_center_crop and size.height and size.width:
                    target = _cover_size(image.shape[1], image.shape[2], size.height, size.width)
                # uint8 in, uint8 out: PIL resamples exactly as `images_to_pixels` did.
                image = self.resize(image, size=target, resample=resample)
            if do_center_crop:
                image = self.center_crop(image, crop_size)
            image = image.astype(np.float32)
            if do_rescale:
                image = self.rescale(image, rescale_factor)
            if do_normalize:
                image = self.normalize(image, image_mean, image_std)
            processed.append(image.astype(np.float32, copy=False))

        shapes = {image.shape for image in processed}
        if len(shapes) == 1:
            pixel_values = np.stack(processed)  # (B, 3, H, W)
        elif return_tensors is None:
            pixel_values = processed
        else:
            raise ValueError(
                f"The images came out with different shapes {sorted(shapes)} and cannot be batched: "
                "keep do_resize=True or do_center_crop=True so they share one size."
            )
        return BatchFeature(data={"pixel_values": pixel_values}, tensor_type=return_tensors)

    # ----------------------------------------------------------------------------------------------------
    # pixel_values -> images

    def postprocess(self, pixel_values: Any, output_type: str = "pil") -> list[Image.Image] | np.ndarray:
        r"""
        Turn decoded `pixel_values` back into 8-bit RGB images, inverting `preprocess`'s rescale and
        normalisation.

        Args:
            pixel_values (`torch.Tensor` or `np.ndarray` of shape `(batch_size, 3, height, width)`):
                Pixels as `preprocess` returns them (in [-1, 1] with the default settings); a single
                `(3, height, width)` image is accepted too. Values out of range are clamped.
            output_type (`str`, *optional*, defaults to `"pil"`):
                `"pil"` for a list of RGB `PIL.Image.Image`, `"np"` for one uint8 array of shape
                `(batch_size, height, width, 3)`.

        Returns:
            `list[PIL.Image.Image]` or `np.ndarray`: the images.

        Example:

        ```python
        >>> import torch
        >>> processor = UniCodeImageProcessor()
        >>> processor.postprocess(torch.zeros(1, 3, 64, 64), output_type="np")[0, 0, 0]
        array([128, 128, 128], dtype=uint8)
        ```
        """
        if output_type not in ("pil", "np"):
            raise ValueError(f"output_type must be 'pil' or 'np', got {output_type!r}.")
        if is_torch_tensor(pixel_values):
            pixel_values = pixel_values.detach().float().cpu().numpy()
        if not isinstance(pixel_values, np.ndarray):
            raise ValueError(
                "postprocess expects a torch tensor or numpy array of pixel_values, "
                f"got {type(pixel_values).__name__}."
            )
        if pixel_values.ndim == 3:
            pixel_values = pixel_values[None]
        if pixel_values.ndim != 4 or pixel_values.shape[1] != 3:
            raise ValueError(
                "postprocess expects pixel_values of shape (batch_size, 3, height, width) or "
                f"(3, height, width), got {tuple(pixel_values.shape)}."
            )
        if pixel_values.dtype.kind not in "fiu":  # float, signed or unsigned int
            raise ValueError(f"postprocess expects real-valued pixel_values, got dtype {pixel_values.dtype}.")
        pixels = pixel_values.astype(np.float64)
        if np.isnan(pixels).any():
            raise ValueError("pixel_values contain NaN; there is no image to recover from them.")
        if self.do_normalize:
            mean = np.asarray(self.image_mean, dtype=np.float64).reshape(-1, 1, 1)
            std = np.asarray(self.image_std, dtype=np.float64).reshape(-1, 1, 1)
            pixels = pixels * std + mean
        if self.do_rescale:
            pixels = pixels / self.rescale_factor
        pixels = np.clip(np.rint(pixels), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)  # (B, H, W, 3)
        if output_type == "np":
            return pixels
        return [Image.fromarray(np.ascontiguousarray(image), mode="RGB") for image in pixels]


# ----------------------------------------------------------------------------------------------------
# helpers (module level so they are testable and carry no processor state)


def _checked_background_color(color: Any) -> tuple[int, int, int]:
    try:
        values = tuple(int(c) for c in color)
    except (TypeError, ValueError):
        values = ()
    if len(values) != 3 or not all(0 <= c <= 255 for c in values):
        raise ValueError(f"background_color must be three integers in 0..255 (R, G, B), got {color!r}.")
    return values


def _cover_size(height: int, width: int, target_height: int, target_width: int) -> SizeDict:
    """The smallest aspect-preserving size that covers the target: the shortest edge (relative to it) fits."""
    scale = max(target_height / height, target_width / width)
    return SizeDict(
        height=max(target_height, round(height * scale)),
        width=max(target_width, round(width * scale)),
    )


def _flatten_images(images: Any, out: list, depth: int) -> None:
    if isinstance(images, (list, tuple)):
        if depth > 1:
            raise ValueError("Images nested more than two lists deep: pass a flat list of images.")
        for image in images:
            _flatten_images(image, out, depth + 1)
    elif isinstance(images, Image.Image):
        out.append(images)
    elif isinstance(images, (str, os.PathLike, bytes, bytearray)):
        out.append(open_image(images))
    elif isinstance(images, np.ndarray) or is_torch_tensor(images):
        if images.ndim == 4:  # a batch
            out.extend(images[i] for i in range(images.shape[0]))
        elif images.ndim in (2, 3):
            out.append(images)
        else:
            raise ValueError(
                f"Got an array of shape {tuple(images.shape)}: an image is (H, W), (H, W, C) or (C, H, W), "
                "a batch (B, H, W, C) or (B, C, H, W)."
            )
    else:
        raise ValueError(
            f"Unsupported image type {type(images).__name__}: pass a PIL image, a numpy array, a torch "
            "tensor, a file path, the bytes of an image file, or a list of these."
        )


def open_image(source: str | os.PathLike | bytes | bytearray) -> Image.Image:
    """Open and decode an image file (a path, or its encoded bytes) exactly as the processor does.

    Every way a file can be unusable (missing, a folder, empty, not an image, truncated, a decompression
    bomb, smaller than 2x2) is one `ValueError` that names the file and says what to do, raised before any
    pixel is decoded where the header suffices. The CLI and the Space open uploads through this, so they
    give the same messages as `processor(images=path)`. An animated image gives its first frame (with a
    warning), as the processor encodes one frame per image.
    """
    if isinstance(source, (bytes, bytearray)):
        name, handle = f"<{len(source)} bytes>", io.BytesIO(bytes(source))
    else:
        name = os.fspath(source)
        if name.startswith(("http://", "https://")):
            raise ValueError(
                f"{name!r} is a URL; this processor does not download: fetch it and pass the file."
            )
        if not os.path.isfile(name):
            raise ValueError(f"No image file at {name!r}.")
        handle = name
    try:
        with warnings.catch_warnings():
            # PIL only warns between MAX_IMAGE_PIXELS and twice that; refuse the whole range.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(handle)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ValueError(
            f"{name} is too large to open safely ({error}). Downscale it, or raise "
            "PIL.Image.MAX_IMAGE_PIXELS if you trust the file."
        ) from None
    except UnidentifiedImageError:
        raise ValueError(
            f"{name} is not an image file PIL can read (truncated, corrupt, or another format)."
        ) from None
    except OSError as error:
        raise ValueError(f"Could not open {name}: {error}.") from None
    try:
        return _prepared_pil_image(image, name=name)
    except ValueError:
        image.close()
        raise


def _check_image_size(width: int, height: int, name: str) -> None:
    """Refuse tiny images and decompression bombs, from the header alone, before any pixels are touched."""
    if width < MIN_IMAGE_SIDE or height < MIN_IMAGE_SIDE:
        raise ValueError(
            f"{name} is {width}x{height} pixels; images must be at least {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE}."
        )
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and width * height > limit:
        raise ValueError(
            f"{name} is {width}x{height} = {width * height} pixels, over PIL.Image.MAX_IMAGE_PIXELS "
            f"({limit}), Pillow's decompression-bomb limit. Downscale it, or raise "
            "PIL.Image.MAX_IMAGE_PIXELS if you trust the source."
        )


def _prepared_pil_image(image: Image.Image, name: str = "The image") -> Image.Image:
    """Check the size, decode (reporting truncated data), and apply the EXIF orientation."""
    _check_image_size(image.width, image.height, name)
    try:
        frames = getattr(image, "n_frames", 1)  # counting GIF frames reads the file: a truncated one may fail
    except (OSError, SyntaxError, EOFError, ValueError):
        frames = 1  # the decode below reports the damage
    if frames > 1:
        logger.warning(f"{name} is animated ({frames} frames); its first frame is used.")
        image.seek(0)
    try:
        image.load()
    except (OSError, SyntaxError, EOFError, ValueError) as error:
        raise ValueError(
            f"{name} could not be decoded ({error}); the file is truncated or corrupt. "
            "Re-export or re-download it."
        ) from None
    try:
        transposed = ImageOps.exif_transpose(image)
    except Exception as error:  # a malformed EXIF block should not cost the image
        logger.warning(f"Ignoring unreadable EXIF orientation of {name}: {error}")
        transposed = None
    return transposed if transposed is not None else image


def conversion_note(image: Image.Image) -> str | None:
    """What converting `image` to the tokenizer's 8-bit RGB changes, where it loses something; else `None`.

    Front ends (the CLI) print it, so that nobody wonders why a 16-bit scan or a CMYK print file looks
    different after a round trip. Palette and gray images convert losslessly and get no note.
    """
    mode = image.mode
    if mode in _SIXTEEN_BIT_MODES or mode == "I":
        return f"a {mode!r} (16/32-bit) image: scaled to 8 bits per channel"
    if mode == "F":
        return "a float ('F') image: scaled to 8 bits"
    if mode == "CMYK":
        return "a CMYK image: converted to RGB without a colour profile"
    if mode in _ALPHA_MODES and (mode != "P" or "transparency" in image.info):
        return f"a {mode!r} image with transparency: composited on white, as in training"
    return None


def _pil_to_rgb(image: Image.Image, background_color: tuple[int, int, int]) -> Image.Image:
    """Any PIL mode -> 8-bit RGB: transparency composited on `background_color`, 16-bit/float data scaled."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in _ALPHA_MODES:
        image = image.convert(_ALPHA_MODES[mode])
        if image.mode != "RGBA":
            image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (*background_color, 255))
        return Image.alpha_composite(background, image).convert("RGB")
    if mode in _SIXTEEN_BIT_MODES:
        # 0..65535 -> 0..255; /257 maps both ends exactly (65535 / 257 = 255).
        values = np.asarray(image).astype(np.float64) / 257.0
        return _gray_to_rgb(values)
    if mode == "I":
        # 32-bit integer: Pillow's mode for 16-bit PNG/TIFF data, so 0..65535 is assumed; values outside clip.
        values = np.clip(np.asarray(image).astype(np.float64), 0, 65535) / 257.0
        return _gray_to_rgb(values)
    if mode == "F":
        values = np.asarray(image).astype(np.float64)
        if not np.isfinite(values).all():
            raise ValueError("The 'F' (float) image contains NaN or infinite values.")
        # [0, 1] data (the usual float convention) is scaled up; anything larger is taken as 0..255.
        values = values * 255.0 if values.max() <= 1.0 else values
        return _gray_to_rgb(np.clip(values, 0, 255))
    try:
        return image.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV, RGBX, ...
    except (ValueError, OSError) as error:
        raise ValueError(
            f"Cannot convert a {mode!r} image to RGB ({error}); convert it to RGB first."
        ) from None


def _gray_to_rgb(values: np.ndarray) -> Image.Image:
    gray = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return Image.fromarray(gray, mode="L").convert("RGB")


def _array_to_pil(array: Any, input_data_format: str | ChannelDimension | None) -> Image.Image:
    """A numpy array or torch tensor -> an 8-bit PIL image, checking layout, dtype and range."""
    is_tensor = is_torch_tensor(array)
    if is_tensor:
        array = array.detach().cpu()
        if array.is_floating_point():
            array = array.float()  # bfloat16/float16 have no (or a lossy) numpy route
        array = array.numpy()
    kind = "tensor" if is_tensor else "array"
    shape = tuple(array.shape)

    if array.ndim == 2:
        array = array[..., None]
    elif array.ndim == 3:
        if input_data_format is not None:
            channels_first = ChannelDimension(input_data_format) == ChannelDimension.FIRST
        elif is_tensor:  # torch's convention is (C, H, W); fall back to (H, W, C)
            channels_first = shape[0] in _CHANNEL_COUNTS_TO_MODE or shape[-1] not in _CHANNEL_COUNTS_TO_MODE
        else:  # numpy's (PIL's) convention is (H, W, C); fall back to (C, H, W)
            channels_first = shape[-1] not in _CHANNEL_COUNTS_TO_MODE and shape[0] in _CHANNEL_COUNTS_TO_MODE
        if channels_first:
            array = np.moveaxis(array, 0, -1)
    else:
        raise ValueError(f"Got an image {kind} of shape {shape}: expected (H, W), (H, W, C) or (C, H, W).")

    height, width, channels = array.shape
    if channels not in _CHANNEL_COUNTS_TO_MODE:
        raise ValueError(
            f"Got an image {kind} of shape {shape} with {channels} channels: expected 1 (gray), "
            "2 (gray + alpha), 3 (RGB) or 4 (RGBA), as (H, W, C) or (C, H, W)."
        )
    _check_image_size(width, height, f"The image {kind} of shape {shape}")
    array = _to_uint8(array, kind)
    if channels == 1:
        array = array[..., 0]
    return Image.fromarray(np.ascontiguousarray(array), mode=_CHANNEL_COUNTS_TO_MODE[channels])


def _to_uint8(array: np.ndarray, kind: str) -> np.ndarray:
    dtype = array.dtype
    if dtype == np.uint8:
        return array
    if dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if dtype == np.uint16:
        return np.rint(array / 257.0).astype(np.uint8)
    if np.issubdtype(dtype, np.integer):
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 255:
            raise ValueError(
                f"Integer image {kind} of dtype {dtype} has values in [{low}, {high}]; expected 0..255. "
                "Pass uint8 (0..255), uint16 (0..65535) or float in [0, 1]."
            )
        return array.astype(np.uint8)
    if np.issubdtype(dtype, np.floating):
        if not np.isfinite(array).all():
            raise ValueError(f"The image {kind} contains NaN or infinite values.")
        low, high = float(array.min()), float(array.max())
        if low < 0.0 or high > 1.0:
            raise ValueError(
                f"Float image {kind} has values in [{low:.4g}, {high:.4g}]; expected [0, 1]. Divide 0..255 "
                "data by 255 (or pass uint8); map [-1, 1] model outputs back with `postprocess`."
            )
        return np.rint(array.astype(np.float64) * 255.0).astype(np.uint8)
    raise ValueError(f"Unsupported image {kind} dtype {dtype}: pass uint8, uint16, bool or float in [0, 1].")


__all__ = ["UniCodeImageProcessor", "conversion_note", "open_image"]
