"""OpenMoji as Stage II conversations: captions, group questions, text-to-image (the embedded default).

Each task is a conversation data set in the common schema (`messages`, `images`, `id`) built from the
OpenMoji renders and their CLDR names, groups and subgroups, on the 90/10 split of Stage I, so that the
held-out emoji stay unseen by both stages.
"""

from __future__ import annotations

import datasets
from PIL import ImageOps

from .conversations import CONVERSATION_FEATURES
from .openmoji import emoji_groups, load_openmoji

OPENMOJI_TASKS = ("caption", "group", "subgroup", "text_to_image", "group_to_image")
# The tasks whose text names the emoji: a mirrored render would contradict "left" and "right" in a name.
NAMING_TASKS = ("caption", "text_to_image")
CAPTION_QUESTION = "What emoji is this?"
SUBGROUP_QUESTION = "Which CLDR subgroup is this emoji in?"
TEXT_TO_IMAGE_PROMPT = "Draw the emoji: {name}."
# Class-conditional drawing, the paper's ImageNet protocol in miniature: the class is the CLDR group.
GROUP_TO_IMAGE_PROMPT = "Draw an emoji from the group {group}."


def emoji_group_names() -> list[str]:
    """The CLDR groups that hold drawable emoji, in CLDR order ("Component" holds only skin-tone swatches)."""
    names = dict.fromkeys(group for group, _ in emoji_groups().values())
    return [name for name in names if name != "Component"]


def group_question() -> str:
    """The group question lists the choices, so that an answer is one of them and exact match is fair."""
    return "Which emoji group is this? Answer with one of: " + ", ".join(emoji_group_names()) + "."


def _messages(question: str | None, answer: str | None, reads_image: bool) -> list[dict]:
    user = ([{"type": "image", "text": None}] if reads_image else []) + [{"type": "text", "text": question}]
    assistant = (
        [{"type": "text", "text": answer}] if answer is not None else [{"type": "image", "text": None}]
    )
    return [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]


def openmoji_conversations(
    task: str, split: str | None = "train", size: int = 64, limit: int | None = None, images=None
) -> datasets.Dataset:
    """One OpenMoji task as conversations.

    Args:
        task (`str`): `"caption"` (image -> name), `"group"` (image -> CLDR group, choices listed),
            `"subgroup"` (image -> CLDR subgroup), `"text_to_image"` (name -> image) or `"group_to_image"`
            (CLDR group -> an image of that group: class-conditional drawing).
        split, size, limit: as in [`load_openmoji`].
        images (`datasets.Dataset`, *optional*): the rendered split, to render it once for several tasks.
    """
    if task not in OPENMOJI_TASKS:
        raise ValueError(f"Unknown OpenMoji task {task!r}; choose one of {list(OPENMOJI_TASKS)}.")
    images = images if images is not None else load_openmoji(split=split, size=size, limit=limit)

    def build(record):
        if task == "caption":
            messages = _messages(CAPTION_QUESTION, record["name"], reads_image=True)
        elif task == "group":
            messages = _messages(group_question(), record["group"], reads_image=True)
        elif task == "subgroup":
            messages = _messages(SUBGROUP_QUESTION, record["subgroup"], reads_image=True)
        elif task == "group_to_image":
            messages = _messages(GROUP_TO_IMAGE_PROMPT.format(group=record["group"]), None, reads_image=False)
        else:
            messages = _messages(TEXT_TO_IMAGE_PROMPT.format(name=record["name"]), None, reads_image=False)
        return {"messages": messages, "images": [record["image"]], "id": f"{task}-{record['emoji']}"}

    return images.map(
        build, remove_columns=images.column_names, features=CONVERSATION_FEATURES, desc=f"OpenMoji {task}"
    )


def with_mirrored_copies(images: datasets.Dataset) -> datasets.Dataset:
    """The renders, then a left-right mirrored copy of each (`emoji` gets a " (mirrored)" suffix).

    A CLDR group or subgroup does not change in a mirror, so for the tasks that ask only those (and for
    decompression) the copies double the distinct images a group has. Balanced Stage II draws repeat a rare
    group's few emoji several times; with the copies half the repeats are new images (issue 14).
    """
    mirrored = images.map(
        lambda record: {"image": ImageOps.mirror(record["image"]), "emoji": record["emoji"] + " (mirrored)"},
        desc="Mirroring OpenMoji renders",
    )
    return datasets.concatenate_datasets([images, mirrored])


__all__ = [
    "CAPTION_QUESTION",
    "GROUP_TO_IMAGE_PROMPT",
    "NAMING_TASKS",
    "OPENMOJI_TASKS",
    "SUBGROUP_QUESTION",
    "TEXT_TO_IMAGE_PROMPT",
    "emoji_group_names",
    "group_question",
    "openmoji_conversations",
    "with_mirrored_copies",
]
