"""Stage II training sources read into one conversation schema.

Every loader here returns a `datasets.Dataset` with [`CONVERSATION_FEATURES`]:

- `messages`: the turns, `{"role": "system" | "user" | "assistant", "content": [item, ...]}`, where an item
  is `{"type": "text", "text": str}` or `{"type": "image", "text": None}`. Content is always a list of
  items with both keys, so Arrow stores one struct type whatever the source;
- `images`: the images, in the order their `{"type": "image"}` items appear across the turns. Files are
  stored by path and decoded only when a row is read; in-memory PIL images are stored as PNG bytes;
- `id`: a string naming the record in its source.

Sources: LLaVA JSON / JSON Lines (LCS-558K, llava_v1_5_mix665k) through [`load_llava_conversations`],
text-to-image pairs (a `datasets.Dataset` or an imagefolder with `metadata.jsonl`) through
[`load_text_to_image_pairs`], and records built in code through [`conversation_from_qa`] and
[`conversations_to_dataset`].

A record that cannot be trained on raises [`InvalidRecordError`] naming it; with `skip_invalid=True` it is
dropped instead, with a warning that counts the dropped records, and the optional `report` dict receives
`{"total", "kept", "skipped": [(index, id, reason), ...]}`.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Iterable, Sequence
from typing import Any

import datasets
from transformers.utils import logging

logger = logging.get_logger(__name__)

__all__ = [
    "CONVERSATION_FEATURES",
    "DEFAULT_INSTRUCTION_TEMPLATES",
    "IMAGE_TOKEN",
    "LLAVA_ROLES",
    "InvalidRecordError",
    "chat_messages",
    "conversation_from_qa",
    "conversations_to_dataset",
    "load_llava_conversations",
    "load_text_to_image_pairs",
]

IMAGE_TOKEN = "<image>"
# LLaVA's "from" values -> chat roles.
LLAVA_ROLES = {"human": "user", "gpt": "assistant", "system": "system"}
ROLES = ("system", "user", "assistant")
DEFAULT_INSTRUCTION_TEMPLATES = (
    "Draw {caption}.",
    "Generate an image of {caption}.",
    "Create a picture: {caption}",
    "Paint {caption}.",
    "Show me an image of {caption}.",
)

_CONTENT_ITEM = {"type": datasets.Value("string"), "text": datasets.Value("string")}
CONVERSATION_FEATURES = datasets.Features(
    {
        "messages": datasets.List(
            {"role": datasets.Value("string"), "content": datasets.List(_CONTENT_ITEM)}
        ),
        # `Sequence(Image())` is `List(Image())` in datasets >= 4.
        "images": datasets.Sequence(datasets.Image()),
        "id": datasets.Value("string"),
    }
)

_REASONS_SHOWN = 5  # how many skip reasons the warning quotes
_BATCH_SIZE = 1000


class InvalidRecordError(ValueError):
    """A source record that cannot become a training conversation; the message names the record and the fix.

    Args:
        message (`str`): the full message (record index, id, reason, what to do).
        record_id (`str`, *optional*): the record's id.
        reason (`str`, *optional*): the reason alone, as listed in a `report`.
    """

    def __init__(self, message: str, record_id: str | None = None, reason: str | None = None):
        super().__init__(message)
        self.record_id = record_id
        self.reason = reason


# ---------------------------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------------------------


def _text_item(text: str) -> dict:
    return {"type": "text", "text": text}


def _image_item() -> dict:
    return {"type": "image", "text": None}


def _encode_image(image: Any) -> dict:
    """A path, PIL image or `{"path", "bytes"}` dict -> the `{"path", "bytes"}` dict Arrow stores.

    Encoding each image on its own lets one record mix paths and in-memory images (pyarrow refuses a list
    that mixes strings and structs).
    """
    if isinstance(image, os.PathLike):
        image = os.fspath(image)
    return datasets.Image().encode_example(image)


def _finish_report(
    report: dict | None, total: int, skipped: list[tuple[int, str, str]], source: str, what: str
) -> None:
    """Fill `report` and warn about skipped records (never drop a record silently)."""
    if report is not None:
        report.clear()
        report.update({"total": total, "kept": total - len(skipped), "skipped": list(skipped)})
    if skipped:
        reasons = "; ".join(
            f"#{index} (id {record_id!r}): {reason}" for index, record_id, reason in skipped[:_REASONS_SHOWN]
        )
        more = f" (and {len(skipped) - _REASONS_SHOWN} more)" if len(skipped) > _REASONS_SHOWN else ""
        logger.warning(
            f"Skipped {len(skipped)} of {total} invalid {what} in {source}; first reasons: {reasons}{more}."
        )


# ---------------------------------------------------------------------------------------------------------
# LLaVA
# ---------------------------------------------------------------------------------------------------------


def _read_json_records(json_file: str) -> list:
    """A JSON list (`.json`) or one JSON value per line (`.jsonl`); malformed JSON names file, line and column."""
    is_lines = json_file.endswith(".jsonl")
    with open(json_file, encoding="utf-8") as file:
        if not is_lines:
            try:
                records = json.load(file)
            except json.JSONDecodeError as error:
                hint = (
                    " If it holds one record per line, name it `.jsonl`." if error.msg == "Extra data" else ""
                )
                raise ValueError(
                    f"{json_file} is not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}.{hint}"
                ) from error
            if not isinstance(records, list):
                raise ValueError(
                    f"{json_file} must hold a JSON list of LLaVA records, found a {type(records).__name__}."
                )
            return records
        records = []
        for line_number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ValueError(
                    f"{json_file} is not valid JSON Lines: {error.msg} at line {line_number}, column {error.colno}."
                ) from error
        return records


def _split_image_tokens(value: str) -> list[dict]:
    """`"<image>\\nWhat is this?"` -> `[image item, text item "What is this?"]`.

    Whitespace touching an `<image>` (LLaVA puts a newline next to it) is dropped, so are empty pieces; text
    with no `<image>` is kept as written.
    """
    pieces = value.split(IMAGE_TOKEN)
    if len(pieces) == 1:
        return [_text_item(value)]
    content = []
    for position, piece in enumerate(pieces):
        if position > 0:
            content.append(_image_item())
            piece = piece.lstrip()
        if position < len(pieces) - 1:
            piece = piece.rstrip()
        if piece:
            content.append(_text_item(piece))
    return content


def _llava_record(record: Any, index: int, json_file: str, image_folder: str) -> dict:
    """One LLaVA record -> `{"messages", "images", "id"}`, or `InvalidRecordError` naming the record."""

    def invalid(record_id: str, reason: str) -> InvalidRecordError:
        return InvalidRecordError(
            f"Record #{index} (id {record_id!r}) of {json_file}: {reason}", record_id=record_id, reason=reason
        )

    if not isinstance(record, dict):
        raise invalid(
            f"#{index}",
            f"a record must be a JSON object with 'conversations', found a {type(record).__name__}. "
            "Fix or remove it, or pass skip_invalid=True.",
        )
    record_id = str(record["id"]) if record.get("id") is not None else f"#{index}"
    if "conversations" not in record:
        raise invalid(
            record_id,
            f"the record has no 'conversations' (keys: {sorted(record)}). Add its turns, or remove the record, "
            "or pass skip_invalid=True.",
        )
    turns = record["conversations"]
    if not isinstance(turns, list) or not turns:
        raise invalid(
            record_id,
            "empty conversation: 'conversations' must be a non-empty list of turns. Remove the record, "
            "or pass skip_invalid=True.",
        )

    messages, image_tokens = [], 0
    for turn_index, turn in enumerate(turns):
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            raise invalid(
                record_id,
                f"turn {turn_index} must be an object with 'from' and 'value', found {turn!r}.",
            )
        speaker, value = turn["from"], turn["value"]
        if speaker not in LLAVA_ROLES:
            raise invalid(
                record_id,
                f"unknown role {speaker!r} in turn {turn_index}; valid 'from' values are "
                f"{sorted(LLAVA_ROLES)} (mapped to {sorted(set(LLAVA_ROLES.values()))}).",
            )
        if not isinstance(value, str) or not value.strip():
            raise invalid(
                record_id,
                f"empty conversation: turn {turn_index} ({speaker!r}) has an empty value {value!r}. "
                "Fill it in or remove the record, or pass skip_invalid=True.",
            )
        image_tokens += value.count(IMAGE_TOKEN)
        messages.append({"role": LLAVA_ROLES[speaker], "content": _split_image_tokens(value)})
    if not any(message["role"] == "assistant" for message in messages):
        raise invalid(
            record_id,
            "empty conversation: no assistant ('gpt') turn, so there is nothing to learn. Remove the record, "
            "or pass skip_invalid=True.",
        )

    relative_paths = record.get("image")
    if relative_paths is None:
        relative_paths = []
    elif isinstance(relative_paths, str):
        relative_paths = [relative_paths]
    elif not (isinstance(relative_paths, list) and all(isinstance(path, str) for path in relative_paths)):
        raise invalid(
            record_id, f"'image' must be a relative path or a list of them, found {relative_paths!r}."
        )
    if image_tokens != len(relative_paths):
        raise invalid(
            record_id,
            f"the conversation has {image_tokens} {IMAGE_TOKEN} token(s) but the record has "
            f"{len(relative_paths)} image(s) in 'image'. Each image needs exactly one {IMAGE_TOKEN} where "
            "it is read.",
        )
    paths = []
    for relative_path in relative_paths:
        path = os.path.join(image_folder, relative_path)
        if not os.path.isfile(path):
            raise invalid(
                record_id,
                f"missing image file {path}. Check `image_folder` (the folder the 'image' paths are "
                "relative to) or download the missing images.",
            )
        paths.append(path)
    return {"messages": messages, "images": paths, "id": record_id}


def load_llava_conversations(
    json_file: str | os.PathLike,
    image_folder: str | os.PathLike,
    skip_invalid: bool = False,
    report: dict | None = None,
) -> datasets.Dataset:
    """Read a LLaVA conversation file (LCS-558K, llava_v1_5_mix665k) into [`CONVERSATION_FEATURES`].

    Each record is `{"id", "image" (a relative path, a list of them, or absent for text only),
    "conversations": [{"from": "human" | "gpt" | "system", "value": str}, ...]}`. Roles become
    `user` / `assistant` / `system`, and every `<image>` in a value becomes an image item at that place
    (`"<image>\\nWhat is this?"` -> `[{"type": "image"}, {"type": "text", "text": "What is this?"}]`).
    Images are stored as paths, so nothing is decoded until a row is read.

    Args:
        json_file (`str` or `os.PathLike`):
            a JSON list of records, or JSON Lines if its name ends with `.jsonl`.
        image_folder (`str` or `os.PathLike`):
            the folder the records' `image` paths are relative to.
        skip_invalid (`bool`, *optional*, defaults to `False`):
            drop invalid records (with a warning counting them) instead of raising [`InvalidRecordError`].
        report (`dict`, *optional*):
            if given, filled on return with `{"total": int, "kept": int, "skipped": [(index, id, reason), ...]}`.

    Returns:
        `datasets.Dataset` with [`CONVERSATION_FEATURES`], in file order.

    Raises:
        `FileNotFoundError`: `json_file` or `image_folder` does not exist.
        `ValueError`: the file is not valid JSON (the message gives line and column).
        [`InvalidRecordError`]: a record is invalid (missing image file, `<image>` count not matching the
            images, unknown role, empty conversation, not an object) and `skip_invalid` is `False`. The
            message names the record's index and id and what to do.

    Example:

    ```python
    >>> from transformers_unicode.data.conversations import load_llava_conversations

    >>> report = {}
    >>> dataset = load_llava_conversations(
    ...     "LLaVA-Pretrain/blip_laion_cc_sbu_558k.json", "LLaVA-Pretrain/images", skip_invalid=True, report=report
    ... )
    >>> dataset[0]["messages"][0]
    {'role': 'user', 'content': [{'type': 'text', 'text': 'Render a clear and concise summary of the photo.'}, {'type': 'image', 'text': None}]}
    >>> report["skipped"]
    []
    ```
    """
    json_file, image_folder = os.fspath(json_file), os.fspath(image_folder)
    if not os.path.isfile(json_file):
        raise FileNotFoundError(f"LLaVA conversation file not found: {os.path.abspath(json_file)}")
    if not os.path.isdir(image_folder):
        raise FileNotFoundError(f"LLaVA image folder not found: {os.path.abspath(image_folder)}")
    raw_records = _read_json_records(json_file)

    records, skipped = [], []
    for index, raw in enumerate(raw_records):
        try:
            records.append(_llava_record(raw, index, json_file, image_folder))
        except InvalidRecordError as error:
            if not skip_invalid:
                raise
            skipped.append((index, error.record_id, error.reason))
    _finish_report(report, len(raw_records), skipped, json_file, "LLaVA records")
    return conversations_to_dataset(records)


# ---------------------------------------------------------------------------------------------------------
# Text-to-image pairs
# ---------------------------------------------------------------------------------------------------------


def _check_templates(instruction_templates: Sequence[str] | None) -> tuple[str, ...]:
    templates = DEFAULT_INSTRUCTION_TEMPLATES if instruction_templates is None else instruction_templates
    if isinstance(templates, str):
        raise ValueError("`instruction_templates` must be a list of strings, not one string.")
    templates = tuple(templates)
    if not templates:
        raise ValueError("`instruction_templates` is empty; give at least one template with '{caption}'.")
    for template in templates:
        if not isinstance(template, str) or "{caption}" not in template:
            raise ValueError(f"Instruction template {template!r} must be a string containing '{{caption}}'.")
        try:
            template.format(caption="")
        except (KeyError, IndexError, ValueError) as error:
            raise ValueError(
                f"Instruction template {template!r} can only use the field '{{caption}}' "
                f"(write literal braces as '{{{{' and '}}}}'): {error!r}"
            ) from error
    return templates


def _choose_template(templates: Sequence[str], seed: int, record_id: str) -> str:
    """A choice fixed by (seed, record id): stable across runs, processes and record order, and unchanged
    for the other records when one is skipped."""
    return templates[zlib.crc32(f"{seed}\0{record_id}".encode()) % len(templates)]


def _image_problem(image: Any) -> str | None:
    """Why an undecoded image value (path string or `{"path", "bytes"}` dict) cannot be read, or `None`."""
    if image is None:
        return "no image"
    if isinstance(image, dict):
        if image.get("bytes") is not None:
            return None
        path = image.get("path")
    else:
        path = image
    if not path:
        return "no image"
    if not os.path.isfile(path):
        return f"missing image file {os.path.abspath(path)}"
    return None


def _pair_ids(
    batch: dict, indices: list[int], id_column: str | None, relative_to: str | None, image_column: str
):
    if id_column is not None:
        return [str(value) for value in batch[id_column]]
    if relative_to is not None:
        return [
            os.path.relpath(image["path"], relative_to) if image.get("path") else str(index)
            for image, index in zip(batch[image_column], indices, strict=True)
        ]
    return [str(index) for index in indices]


def _pairs_to_conversations(
    batch: dict,
    indices: list[int],
    caption_column: str,
    image_column: str,
    id_column: str | None,
    relative_to: str | None,
    templates: tuple[str, ...],
    seed: int,
    skip: frozenset[int],
) -> dict:
    """`datasets.map` function (batched, with indices): pairs -> conversations, dropping the `skip` rows."""
    ids = _pair_ids(batch, indices, id_column, relative_to, image_column)
    output = {"messages": [], "images": [], "id": []}
    for index, record_id, caption, image in zip(
        indices, ids, batch[caption_column], batch[image_column], strict=True
    ):
        if index in skip:
            continue
        instruction = _choose_template(templates, seed, record_id).format(caption=caption.strip())
        output["messages"].append(
            [
                {"role": "user", "content": [_text_item(instruction)]},
                {"role": "assistant", "content": [_image_item()]},
            ]
        )
        output["images"].append([_encode_image(image)])
        output["id"].append(record_id)
    return output


def _load_image_folder(folder: str) -> datasets.Dataset:
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"Text-to-image folder not found: {os.path.abspath(folder)}")
    metadata = os.path.join(folder, "metadata.jsonl")
    if not os.path.isfile(metadata):
        raise FileNotFoundError(
            f"No metadata.jsonl in {os.path.abspath(folder)}: a text-to-image folder needs one line "
            '{"file_name": "a.png", "caption": "..."} per image (the datasets imagefolder convention).'
        )
    # A packaged builder: works offline. Images listed in metadata.jsonl are kept by path (not decoded);
    # images with no metadata line are left out by the builder; listed files that do not exist are kept
    # and caught by the validation below.
    return datasets.load_dataset("imagefolder", data_dir=folder, split="train")


def load_text_to_image_pairs(
    source: datasets.Dataset | str | os.PathLike,
    caption_column: str = "caption",
    image_column: str = "image",
    instruction_templates: Sequence[str] | None = None,
    seed: int = 0,
    skip_invalid: bool = False,
    report: dict | None = None,
) -> datasets.Dataset:
    """Text-to-image pairs (CC3M style) -> conversations whose answer is the image.

    Each pair becomes `[user: template.format(caption=caption), assistant: [{"type": "image"}]]` with
    `images = [image]`. The template is chosen per record from `instruction_templates` by a hash of
    `(seed, id)`, so the choice is the same on every run and does not depend on the order of the records.

    The record id is the source's `id` column when it has one, else the image path relative to the folder
    (folder source), else the row index.

    Args:
        source (`datasets.Dataset`, `str` or `os.PathLike`):
            a dataset with caption and image columns (the image column an `Image()` feature or file paths),
            or a folder of images with a `metadata.jsonl` (`{"file_name": "a.png", "caption": "..."}` per
            line), read with datasets' `imagefolder` builder.
        caption_column (`str`, *optional*, defaults to `"caption"`):
            the column holding the captions.
        image_column (`str`, *optional*, defaults to `"image"`):
            the column holding the images (for a folder source, the builder names it `"image"`).
        instruction_templates (`Sequence[str]`, *optional*):
            templates containing `{caption}`; defaults to [`DEFAULT_INSTRUCTION_TEMPLATES`].
        seed (`int`, *optional*, defaults to 0):
            changes which template each record gets.
        skip_invalid (`bool`, *optional*, defaults to `False`):
            drop pairs with an empty caption or a missing image (with a warning counting them) instead of
            raising [`InvalidRecordError`].
        report (`dict`, *optional*):
            if given, filled on return with `{"total": int, "kept": int, "skipped": [(index, id, reason), ...]}`.

    Returns:
        `datasets.Dataset` with [`CONVERSATION_FEATURES`]; images stay undecoded until read.

    Raises:
        `FileNotFoundError`: the folder, or its `metadata.jsonl`, does not exist.
        `ValueError`: a column is missing (the message lists the available ones), or a template is invalid.
        [`InvalidRecordError`]: a pair has an empty caption or a missing image, and `skip_invalid` is `False`.

    Example:

    ```python
    >>> from transformers_unicode.data.conversations import load_text_to_image_pairs

    >>> dataset = load_text_to_image_pairs("my_pairs/", instruction_templates=["Draw {caption}."])
    >>> dataset[0]["messages"]
    [{'role': 'user', 'content': [{'type': 'text', 'text': 'Draw a red apple.'}]}, {'role': 'assistant', 'content': [{'type': 'image', 'text': None}]}]
    ```
    """
    templates = _check_templates(instruction_templates)
    relative_to = None
    if isinstance(source, datasets.Dataset):
        dataset, source_name = source, "the given dataset"
    elif isinstance(source, (str, os.PathLike)):
        folder = os.fspath(source)
        dataset, source_name = _load_image_folder(folder), os.path.abspath(folder)
        relative_to = os.path.abspath(folder)
    else:
        raise TypeError(
            f"`source` must be a datasets.Dataset or a folder path, found {type(source).__name__}. "
            "For a DatasetDict, pass one split."
        )

    for role, column in (("caption", caption_column), ("image", image_column)):
        if column not in dataset.column_names:
            raise ValueError(
                f"No {role} column {column!r} in {source_name}; available columns: {dataset.column_names}. "
                f"Pass `{role}_column=`."
            )
    image_feature = dataset.features[image_column]
    if isinstance(image_feature, datasets.Image):
        dataset = dataset.cast_column(image_column, datasets.Image(decode=False))  # paths/bytes, no decoding
    elif not (
        isinstance(image_feature, datasets.Value) and image_feature.dtype in ("string", "large_string")
    ):
        raise ValueError(
            f"The image column {image_column!r} must be an Image() feature or file paths, found {image_feature}."
        )
    id_column = "id" if "id" in dataset.column_names and "id" not in (caption_column, image_column) else None

    # Validation first, in plain Python, so errors and skip reasons reach the caller even when `map` below
    # is answered from its cache.
    skipped, total = [], len(dataset)
    columns = dataset.select_columns([caption_column, image_column] + ([id_column] if id_column else []))
    for start in range(0, total, _BATCH_SIZE):
        batch = columns[start : start + _BATCH_SIZE]
        indices = list(range(start, start + len(batch[caption_column])))
        ids = _pair_ids(batch, indices, id_column, relative_to, image_column)
        for index, record_id, caption, image in zip(
            indices, ids, batch[caption_column], batch[image_column], strict=True
        ):
            if not isinstance(caption, str) or not caption.strip():
                reason = f"empty caption {caption!r} in column {caption_column!r}"
            else:
                reason = _image_problem(image)
            if reason is None:
                continue
            if not skip_invalid:
                raise InvalidRecordError(
                    f"Pair #{index} (id {record_id!r}) of {source_name}: {reason}. Fix or remove the pair, "
                    "or pass skip_invalid=True.",
                    record_id=record_id,
                    reason=reason,
                )
            skipped.append((index, record_id, reason))
    _finish_report(report, total, skipped, source_name, "text-to-image pairs")

    return dataset.map(
        _pairs_to_conversations,
        batched=True,
        batch_size=_BATCH_SIZE,
        with_indices=True,
        remove_columns=dataset.column_names,
        features=CONVERSATION_FEATURES,
        fn_kwargs={
            "caption_column": caption_column,
            "image_column": image_column,
            "id_column": id_column,
            "relative_to": relative_to,
            "templates": templates,
            "seed": seed,
            "skip": frozenset(index for index, _, _ in skipped),
        },
        desc="Text-to-image pairs to conversations",
    )


# ---------------------------------------------------------------------------------------------------------
# Records built in code
# ---------------------------------------------------------------------------------------------------------


def chat_messages(messages: list[dict]) -> list[dict]:
    """Stored turns -> what a chat template reads.

    Arrow stores every content item with both keys (an image item has `text: None`), while chat templates
    expect `{"type": "image"}` and text items with a string; plain-string content is kept as it is.
    """
    return [
        turn
        if isinstance(turn["content"], str)
        else {
            "role": turn["role"],
            "content": [
                {"type": "image"} if item["type"] == "image" else {"type": "text", "text": item["text"]}
                for item in turn["content"]
            ],
        }
        for turn in messages
    ]


def conversation_from_qa(question: str, answer: str, image: Any = None, system: str | None = None) -> dict:
    """One conversation record: `[system], user: [image] question, assistant: answer`.

    Args:
        question (`str`): the user's text.
        answer (`str`): the assistant's text.
        image (`PIL.Image.Image`, `str` or `os.PathLike`, *optional*):
            an image the user shows before the question (an in-memory image or a file path).
        system (`str`, *optional*): a system prompt, as a first turn.

    Returns:
        `dict` with `messages` and `images`, ready for [`conversations_to_dataset`].

    Example:

    ```python
    >>> from PIL import Image
    >>> from transformers_unicode.data.conversations import conversation_from_qa, conversations_to_dataset

    >>> record = conversation_from_qa("What colour is this?", "Red.", image=Image.new("RGB", (8, 8), "red"))
    >>> record["messages"][0]["content"]
    [{'type': 'image', 'text': None}, {'type': 'text', 'text': 'What colour is this?'}]
    >>> dataset = conversations_to_dataset([record], ids=["red-square"])
    ```
    """
    for name, text in (("question", question), ("answer", answer)):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"`{name}` must be a non-empty string, found {text!r}.")
    messages = []
    if system is not None:
        if not isinstance(system, str) or not system.strip():
            raise ValueError(f"`system` must be a non-empty string or None, found {system!r}.")
        messages.append({"role": "system", "content": [_text_item(system)]})
    user_content = ([_image_item()] if image is not None else []) + [_text_item(question)]
    messages.append({"role": "user", "content": user_content})
    messages.append({"role": "assistant", "content": [_text_item(answer)]})
    return {"messages": messages, "images": [image] if image is not None else []}


def _normalise_record(record: Any, index: int, record_id: str) -> dict:
    """Check a built record and complete its content items (`{"type": "image"}` -> `text: None`)."""

    def invalid(reason: str) -> InvalidRecordError:
        return InvalidRecordError(
            f"Record #{index} (id {record_id!r}): {reason}", record_id=record_id, reason=reason
        )

    if not isinstance(record, dict) or not isinstance(record.get("messages"), list):
        raise invalid("a record must be a dict with a 'messages' list (see conversation_from_qa).")
    if not record["messages"]:
        raise invalid("empty conversation: 'messages' has no turns.")
    messages, image_items = [], 0
    for turn_index, turn in enumerate(record["messages"]):
        if not isinstance(turn, dict) or turn.get("role") not in ROLES:
            role = turn.get("role") if isinstance(turn, dict) else turn
            raise invalid(f"unknown role {role!r} in turn {turn_index}; valid roles are {list(ROLES)}.")
        content = turn.get("content")
        if isinstance(content, str):
            content = [_text_item(content)]
        if not isinstance(content, list) or not content:
            raise invalid(f"turn {turn_index} has no content; give a list of text/image items.")
        items = []
        for item in content:
            kind = item.get("type") if isinstance(item, dict) else None
            if kind == "image":
                image_items += 1
                items.append(_image_item())
            elif kind == "text" and isinstance(item.get("text"), str):
                items.append(_text_item(item["text"]))
            else:
                raise invalid(
                    f"turn {turn_index} has the content item {item!r}; items are "
                    "{'type': 'text', 'text': str} or {'type': 'image'}."
                )
        messages.append({"role": turn["role"], "content": items})
    images = record.get("images") or []
    if not isinstance(images, (list, tuple)):
        raise invalid(f"'images' must be a list, found {type(images).__name__}.")
    if len(images) != image_items:
        raise invalid(
            f"the messages have {image_items} image item(s) but 'images' has {len(images)} image(s)."
        )
    return {"messages": messages, "images": [_encode_image(image) for image in images], "id": record_id}


def conversations_to_dataset(records: Iterable[dict], ids: Sequence[str] | None = None) -> datasets.Dataset:
    """Records (`messages`, `images`, optionally `id`) -> a `datasets.Dataset` with [`CONVERSATION_FEATURES`].

    Images may be file paths (stored as paths, decoded lazily), in-memory PIL images (stored as PNG bytes) or
    `{"path", "bytes"}` dicts. Content items `{"type": "image"}` get `text: None`, and a plain-string content
    becomes one text item, so every record has the same struct schema.

    Args:
        records (`Iterable[dict]`): e.g. from [`conversation_from_qa`].
        ids (`Sequence[str]`, *optional*):
            one id per record; defaults to each record's `id`, else its position.

    Returns:
        `datasets.Dataset` with [`CONVERSATION_FEATURES`] (also when `records` is empty).

    Raises:
        [`InvalidRecordError`]: a record has an unknown role, an empty conversation, a malformed item, or a
            number of images different from its image items.
        `ValueError`: `ids` does not have one id per record.

    Example:

    ```python
    >>> from transformers_unicode.data.conversations import conversation_from_qa, conversations_to_dataset

    >>> dataset = conversations_to_dataset([conversation_from_qa("Say hi.", "Hi!")])
    >>> dataset[0]["id"], dataset[0]["images"]
    ('0', [])
    ```
    """
    records = list(records)
    if ids is not None:
        ids = [str(record_id) for record_id in ids]
        if len(ids) != len(records):
            raise ValueError(f"Got {len(ids)} ids for {len(records)} records; give one id per record.")
    columns = {"messages": [], "images": [], "id": []}
    for index, record in enumerate(records):
        if ids is not None:
            record_id = ids[index]
        elif isinstance(record, dict) and record.get("id") is not None:
            record_id = str(record["id"])
        else:
            record_id = str(index)
        normalised = _normalise_record(record, index, record_id)
        for key in columns:
            columns[key].append(normalised[key])
    return datasets.Dataset.from_dict(columns, features=CONVERSATION_FEATURES)
