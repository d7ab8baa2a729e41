"""Shared tiny fixtures: a random Llama with a 128-id vocabulary and tokenizers built from it."""

import os

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import LlamaConfig, LlamaForCausalLM, TrainerCallback

from transformers_unicode import UniCodeVisualTokenizer, UniCodeVisualTokenizerConfig

# The README runs the suite as 2 pytest-xdist workers. One torch thread each: two 2-thread processes on 2
# cores spin against each other (OpenMP's busy wait), and so do they against anything else on the machine.
# Subprocesses the tests start inherit the same count through OMP_NUM_THREADS.
THREADS = 1 if os.environ.get("PYTEST_XDIST_WORKER") else 2
torch.set_num_threads(THREADS)
os.environ["OMP_NUM_THREADS"] = str(THREADS)


VOCAB = 128
HIDDEN = 32
SPECIAL_IDS = (0, 1, 2)


def tiny_llm(vocab_size: int = VOCAB, hidden_size: int = HIDDEN, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=1,
        num_attention_heads=2,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    return LlamaForCausalLM(config)


def tiny_tokenizer_config(quantizer: str = "rq", **overrides) -> UniCodeVisualTokenizerConfig:
    values = dict(
        image_size=16,
        latent_size=2,
        patch_size=2,
        block_out_channels=(16, 16, 16) if quantizer != "hq" else (16, 16),
        norm_num_groups=8,
        quantizer=quantizer,
        codes_per_position=4,
    )
    values.update(overrides)
    return UniCodeVisualTokenizerConfig(**values)


def tiny_tokenizer(quantizer: str = "rq", seed: int = 0, **overrides) -> UniCodeVisualTokenizer:
    llm = tiny_llm()
    torch.manual_seed(seed)
    return UniCodeVisualTokenizer.from_llm(llm, tiny_tokenizer_config(quantizer, **overrides))


@pytest.fixture
def llm():
    return tiny_llm()


@pytest.fixture
def pixels():
    torch.manual_seed(1)
    return torch.rand(3, 3, 16, 16) * 2 - 1


CORPUS = [
    "a red apple on a white table",
    "what is this picture? it is a smiling face",
    "draw a blue car and a green tree",
    "the cat sat on the mat with a yellow hat",
    "which group is this emoji in? animals and nature",
]


def tiny_text_tokenizer(vocab_size: int = VOCAB):
    """A real fast BPE tokenizer with `vocab_size` ids (<pad>, <s>, </s> = 0, 1, 2; ChatML's markers 4, 5), trained here in
    milliseconds on a few sentences, so the processor is tested on true tokenisation, offline."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Metaspace()
    alphabet = list("abcdefghijklmnopqrstuvwxyz?!.,'")
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "<s>", "</s>", "<unk>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=alphabet,
    )
    backend.train_from_iterator(CORPUS, trainer)
    assert backend.get_vocab_size() == vocab_size, backend.get_vocab_size()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


def tiny_gpt2(vocab_size: int = VOCAB, hidden_size: int = HIDDEN, seed: int = 0):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=vocab_size,
        n_embd=hidden_size,
        n_layer=1,
        n_head=2,
        n_positions=256,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    return GPT2LMHeadModel(config)


def tiny_unicode(
    architecture: str = "llama", quantizer: str = "rq", seed: int = 0, image_head: str = "flat", **overrides
):
    """(model, processor): a tiny random LLM of the given architecture with a tiny visual tokenizer built from it.

    `image_head="depth"` adds a one-layer depth head; `overrides` go to the visual tokenizer's config."""
    from transformers_unicode import UniCodeForCausalLM

    llm = tiny_llm(seed=seed) if architecture == "llama" else tiny_gpt2(seed=seed)
    torch.manual_seed(seed)
    visual = UniCodeVisualTokenizer.from_llm(llm, tiny_tokenizer_config(quantizer, **overrides))
    head = {} if image_head == "flat" else {"image_head": image_head, "depth_num_layers": 1}
    return UniCodeForCausalLM.from_llm(
        llm, visual, tokenizer=tiny_text_tokenizer(), return_processor=True, **head
    )


TINY_SFT_SCRIPT = dict(
    train_limit=16,
    num_samples=16,
    eval_limit=0,
    decompression_segments=2,
    mixture="caption=1,group=1,text_to_image=1,decompression=1",
)


def tiny_sft(output_dir, unicode=None, model_args=None, script=None, **kwargs):
    """A few Stage II steps of a tiny UniCode on OpenMoji through `run_sft`; returns (results, trainer).

    `unicode` is a (model, processor) pair (a fresh `tiny_unicode()` by default); keyword arguments that
    `run_sft` takes (callbacks, resume_from_checkpoint) go to it, the rest override the SFTConfig.
    """
    from trl import ModelConfig, SFTConfig

    from transformers_unicode.training.stage2 import SFTScriptArguments, run_sft

    run_kwargs = {k: kwargs.pop(k) for k in ("callbacks", "resume_from_checkpoint") if k in kwargs}
    config = dict(
        output_dir=str(output_dir),
        max_steps=4,
        per_device_train_batch_size=4,
        learning_rate=1e-3,
        use_cpu=True,
        bf16=False,
        report_to=[],
        logging_steps=1,
        save_strategy="no",
        max_length=None,
        disable_tqdm=True,
        activation_checkpointing=False,
        seed=0,
        data_seed=0,
    )
    config.update(kwargs)
    model, processor = unicode if unicode is not None else tiny_unicode()
    out = {}
    results = run_sft(
        SFTScriptArguments(**{**TINY_SFT_SCRIPT, **(script or {})}),
        SFTConfig(**config),
        model_args or ModelConfig(),
        model=model,
        processor=processor,
        trainer_out=out,
        **run_kwargs,
    )
    return results, out["trainer"]


class StopAt(TrainerCallback):
    """Simulates a crash: raises once training passes `step` (for the resume tests)."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt


# ---- image files as users hand them in: unusable ones, and usable ones that need converting ----------------
def _png_chunk(kind: bytes, data: bytes) -> bytes:
    import struct
    import zlib

    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png() -> bytes:
    """A 200-byte PNG whose header claims 60000 x 60000 pixels: Pillow's decompression-bomb case."""
    import struct
    import zlib

    header = struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _png_chunk(b"IEND", b"")
    )


UNUSABLE_IMAGE_KINDS = (
    "missing",
    "a folder",
    "empty",
    "truncated",
    "not an image",
    "decompression bomb",
    "1x1",
)
CONVERTIBLE_IMAGE_KINDS = ("animated GIF", "16-bit", "CMYK", "palette", "alpha")


def unusable_image_files(folder) -> dict:
    """name -> (path, a fragment of the message that must name the problem), written into `folder`."""
    import io

    folder.mkdir(parents=True, exist_ok=True)
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    noise.save(buffer, format="PNG")
    files = {
        "missing": (folder / "missing.png", None, "No image file"),
        "a folder": (folder / "a_folder.png", None, "No image file"),
        "empty": (folder / "empty.png", b"", "not an image file"),
        "truncated": (
            folder / "truncated.png",
            buffer.getvalue()[: len(buffer.getvalue()) // 2],
            "truncated",
        ),
        "not an image": (folder / "notes.png", b"these are notes, not pixels\n", "not an image file"),
        "decompression bomb": (folder / "bomb.png", bomb_png(), "too large"),
    }
    (folder / "a_folder.png").mkdir(exist_ok=True)
    tiny = io.BytesIO()
    Image.new("RGB", (1, 1), (255, 0, 0)).save(tiny, format="PNG")
    files["1x1"] = (folder / "one_pixel.png", tiny.getvalue(), "at least 2x2")
    for path, data, _ in files.values():
        if data is not None:
            path.write_bytes(data)
    assert tuple(files) == UNUSABLE_IMAGE_KINDS
    return {name: (path, message) for name, (path, _, message) in files.items()}


def convertible_image_files(folder) -> dict:
    """name -> (path, a fragment of the conversion note, or None for a lossless conversion)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    rgb = Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8))
    files = {}
    frames = [Image.new("RGB", (24, 24), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    files["animated GIF"] = (folder / "animated.gif", None)
    Image.fromarray(rng.integers(0, 65536, (24, 24), dtype=np.uint16)).save(folder / "sixteen.png")
    files["16-bit"] = (folder / "sixteen.png", "8 bits")
    rgb.convert("CMYK").save(folder / "cmyk.jpg")
    files["CMYK"] = (folder / "cmyk.jpg", "CMYK")
    rgb.convert("P").save(folder / "palette.png")
    files["palette"] = (folder / "palette.png", None)
    rgb.convert("RGBA").save(folder / "alpha.png")
    files["alpha"] = (folder / "alpha.png", "composited on white")
    assert tuple(files) == CONVERTIBLE_IMAGE_KINDS
    return files
