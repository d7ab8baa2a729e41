"""Stage II sources -> one conversation schema: LLaVA files, text-to-image pairs, records built in code."""

import json
import logging

import datasets
import pytest
from PIL import Image

from transformers_unicode.data.conversations import (
    CONVERSATION_FEATURES,
    DEFAULT_INSTRUCTION_TEMPLATES,
    InvalidRecordError,
    conversation_from_qa,
    conversations_to_dataset,
    load_llava_conversations,
    load_text_to_image_pairs,
)

LOGGER = "transformers_unicode.data.conversations"
RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def image_item():
    return {"type": "image", "text": None}


def text_item(text):
    return {"type": "text", "text": text}


def save_image(path, size, colour):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)  # PNG: lossless, so colours read back exactly
    return path


def turn(speaker, value):
    return {"from": speaker, "value": value}


GOOD_RECORD = {"id": "good", "conversations": [turn("human", "Hi?"), turn("gpt", "Hello.")]}


@pytest.fixture
def llava(tmp_path):
    """(records, image folder): three LLaVA records as in LCS-558K / mix665k, images in sub-folders."""
    folder = tmp_path / "images"
    save_image(folder / "coco" / "a.png", (4, 6), RED)
    save_image(folder / "vg" / "b.png", (5, 3), GREEN)
    save_image(folder / "vg" / "c.png", (2, 7), BLUE)
    records = [
        {
            "id": "000000033471",
            "image": "coco/a.png",
            "conversations": [turn("human", "<image>\nWhat is this?"), turn("gpt", "A red square.")],
        },
        {
            "id": 42,  # mix665k has a few integer ids
            "image": ["vg/b.png", "vg/c.png"],
            "conversations": [
                turn("system", "Be brief."),
                turn("human", "Compare <image> with\n<image>"),
                turn("gpt", "Green, then blue."),
                turn("human", "Which is taller?"),
                turn("gpt", "The blue one."),
            ],
        },
        {"id": "text-only", "conversations": [turn("human", "Say hi."), turn("gpt", "Hi!")]},
    ]
    return records, folder


def write_records(path, records):
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(record) + "\n" for record in records))
    else:
        path.write_text(json.dumps(records, indent=1))
    return path


# ---------------------------------------------------------------------------------------------------------
# LLaVA
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_llava_round_trip(tmp_path, llava, suffix):
    records, folder = llava
    report = {}
    dataset = load_llava_conversations(
        write_records(tmp_path / f"data{suffix}", records), folder, report=report
    )

    assert dataset.features == CONVERSATION_FEATURES
    assert report == {"total": 3, "kept": 3, "skipped": []}
    assert dataset["id"] == ["000000033471", "42", "text-only"]
    first, second, third = dataset
    assert first["messages"] == [
        {"role": "user", "content": [image_item(), text_item("What is this?")]},
        {"role": "assistant", "content": [text_item("A red square.")]},
    ]
    assert second["messages"] == [
        {"role": "system", "content": [text_item("Be brief.")]},
        {"role": "user", "content": [text_item("Compare"), image_item(), text_item("with"), image_item()]},
        {"role": "assistant", "content": [text_item("Green, then blue.")]},
        {"role": "user", "content": [text_item("Which is taller?")]},
        {"role": "assistant", "content": [text_item("The blue one.")]},
    ]
    assert third["messages"] == [
        {"role": "user", "content": [text_item("Say hi.")]},
        {"role": "assistant", "content": [text_item("Hi!")]},
    ]
    decoded = [
        [(image.size, image.convert("RGB").getpixel((0, 0))) for image in row] for row in dataset["images"]
    ]
    assert decoded == [[((4, 6), RED)], [((5, 3), GREEN), ((2, 7), BLUE)], []]
    # Stored as paths: nothing is decoded (or copied) until a row is read.
    stored = dataset.cast_column("images", datasets.Sequence(datasets.Image(decode=False)))["images"]
    assert [image["bytes"] for image in stored[1]] == [None, None]
    assert stored[1][0]["path"] == str(folder / "vg" / "b.png")


MALFORMED = {
    "missing image file": (
        {
            "id": "lost",
            "image": "coco/nope.png",
            "conversations": [turn("human", "<image>\nWhat?"), turn("gpt", "X")],
        },
        ["missing image file", "coco/nope.png"],
    ),
    "image without <image>": (
        {
            "id": "no-token",
            "image": "coco/a.png",
            "conversations": [turn("human", "What?"), turn("gpt", "X")],
        },
        ["0 <image> token(s)", "1 image(s)"],
    ),
    "two <image> for one image": (
        {
            "id": "two-tokens",
            "image": "coco/a.png",
            "conversations": [turn("human", "<image> and <image>"), turn("gpt", "X")],
        },
        ["2 <image> token(s)", "1 image(s)"],
    ),
    "<image> in a text-only record": (
        {"id": "text-token", "conversations": [turn("human", "<image>\nWhat?"), turn("gpt", "X")]},
        ["1 <image> token(s)", "0 image(s)"],
    ),
    "unknown role": (
        {"id": "bot", "conversations": [turn("human", "Hi"), turn("bot", "Hello")]},
        ["unknown role 'bot'", "'gpt'", "'human'", "'system'"],
    ),
    "no turns": ({"id": "no-turns", "conversations": []}, ["empty conversation", "non-empty list"]),
    "no assistant turn": (
        {"id": "no-answer", "conversations": [turn("human", "Hi")]},
        ["empty conversation", "no assistant"],
    ),
    "empty value": (
        {"id": "blank", "conversations": [turn("human", "Hi"), turn("gpt", "  ")]},
        ["empty conversation", "turn 1", "empty value"],
    ),
    "no conversations": ({"id": "bare", "image": "coco/a.png"}, ["no 'conversations'"]),
    "not an object": ("just a string", ["must be a JSON object", "found a str"]),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_llava_invalid_record_names_record_and_reason(tmp_path, llava, case):
    _, folder = llava
    bad, expected = MALFORMED[case]
    path = write_records(tmp_path / "data.json", [GOOD_RECORD, bad])
    with pytest.raises(InvalidRecordError) as error:
        load_llava_conversations(path, folder)
    message = str(error.value)
    record_id = bad["id"] if isinstance(bad, dict) else "#1"
    assert f"Record #1 (id '{record_id}')" in message
    assert str(path) in message
    for fragment in expected:
        assert fragment in message
    if case == "missing image file":
        assert str(folder / "coco" / "nope.png") in message  # the full path looked for


def test_llava_skip_invalid_counts_and_warns(tmp_path, llava, caplog):
    records, folder = llava
    bad = [MALFORMED[case][0] for case in MALFORMED]
    path = write_records(tmp_path / "data.jsonl", records[:1] + bad + records[1:])
    report = {}
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        dataset = load_llava_conversations(path, folder, skip_invalid=True, report=report)

    assert dataset["id"] == ["000000033471", "42", "text-only"]
    assert report["total"] == 3 + len(MALFORMED) and report["kept"] == 3
    assert [index for index, _, _ in report["skipped"]] == list(range(1, 1 + len(MALFORMED)))
    assert report["skipped"][0][1] == "lost" and "missing image file" in report["skipped"][0][2]
    warnings = [record.getMessage() for record in caplog.records if record.name == LOGGER]
    assert len(warnings) == 1
    assert f"Skipped {len(MALFORMED)} of {3 + len(MALFORMED)}" in warnings[0]
    assert "'lost'" in warnings[0] and "missing image file" in warnings[0]
    assert f"and {len(MALFORMED) - 5} more" in warnings[0]


def test_llava_all_invalid_gives_empty_dataset_with_schema(tmp_path, llava):
    _, folder = llava
    path = write_records(tmp_path / "data.json", [MALFORMED["no turns"][0]])
    dataset = load_llava_conversations(path, folder, skip_invalid=True)
    assert len(dataset) == 0 and dataset.features == CONVERSATION_FEATURES


def test_llava_missing_paths(tmp_path, llava):
    records, folder = llava
    path = write_records(tmp_path / "data.json", records)
    with pytest.raises(FileNotFoundError, match="nowhere.json"):
        load_llava_conversations(tmp_path / "nowhere.json", folder)
    with pytest.raises(FileNotFoundError, match="no-images"):
        load_llava_conversations(path, tmp_path / "no-images")


@pytest.mark.parametrize(
    "name, text, expected",
    [
        ("broken.json", '[\n  {"id": "a",\n   "conversations": [}\n]', "line 3, column"),
        ("lines.json", '{"id": "a"}\n{"id": "b"}\n', "name it `.jsonl`"),
        ("broken.jsonl", '{"id": "a", "conversations": []}\n\n{"id": \n', "line 3, column"),
        ("object.json", '{"id": "a"}', "must hold a JSON list"),
    ],
)
def test_llava_malformed_json(tmp_path, llava, name, text, expected):
    _, folder = llava
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ValueError) as error:
        load_llava_conversations(path, folder)
    assert str(path) in str(error.value) and expected in str(error.value)


# ---------------------------------------------------------------------------------------------------------
# Text-to-image pairs
# ---------------------------------------------------------------------------------------------------------


def pairs_dataset(n=3, with_id=False):
    colours = [RED, GREEN, BLUE]
    data = {
        "caption": [f"a {['red', 'green', 'blue'][i % 3]} square number {i}" for i in range(n)],
        "image": [Image.new("RGB", (3 + i, 4), colours[i % 3]) for i in range(n)],
    }
    features = {"caption": datasets.Value("string"), "image": datasets.Image()}
    if with_id:
        data["id"] = [f"cc3m-{i}" for i in range(n)]
        features["id"] = datasets.Value("string")
    return datasets.Dataset.from_dict(data, features=datasets.Features(features))


def check_pair(row, caption, size, colour, template=None):
    user, assistant = row["messages"]
    assert user["role"] == "user" and assistant == {"role": "assistant", "content": [image_item()]}
    assert len(user["content"]) == 1 and user["content"][0]["type"] == "text"
    instruction = user["content"][0]["text"]
    templates = [template] if template else DEFAULT_INSTRUCTION_TEMPLATES
    assert instruction in [t.format(caption=caption) for t in templates]
    (image,) = row["images"]
    assert image.size == size and image.convert("RGB").getpixel((0, 0)) == colour


def test_pairs_from_dataset():
    source = pairs_dataset()
    dataset = load_text_to_image_pairs(source)
    assert dataset.features == CONVERSATION_FEATURES
    assert dataset["id"] == ["0", "1", "2"]
    for i, (row, colour) in enumerate(zip(dataset, [RED, GREEN, BLUE], strict=True)):
        check_pair(row, source[i]["caption"], (3 + i, 4), colour)

    with_ids = load_text_to_image_pairs(
        pairs_dataset(with_id=True), instruction_templates=["Draw {caption}!"]
    )
    assert with_ids["id"] == ["cc3m-0", "cc3m-1", "cc3m-2"]
    check_pair(with_ids[2], "a blue square number 2", (5, 4), BLUE, template="Draw {caption}!")


def test_pairs_from_path_column(tmp_path):
    path = save_image(tmp_path / "x.png", (6, 2), GREEN)
    source = datasets.Dataset.from_dict({"text": ["  a green bar "], "file": [str(path)]})
    dataset = load_text_to_image_pairs(source, caption_column="text", image_column="file")
    check_pair(dataset[0], "a green bar", (6, 2), GREEN)


def write_folder(folder, lines):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metadata.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return folder


def test_pairs_from_folder(tmp_path):
    folder = tmp_path / "pairs"
    save_image(folder / "a.png", (4, 5), RED)
    save_image(folder / "sub" / "b.png", (7, 3), BLUE)
    write_folder(
        folder,
        [{"file_name": "a.png", "caption": "a red box"}, {"file_name": "sub/b.png", "caption": "blue"}],
    )
    dataset = load_text_to_image_pairs(folder)
    assert dataset.features == CONVERSATION_FEATURES
    rows = sorted(dataset, key=lambda row: row["id"])
    assert [row["id"] for row in rows] == ["a.png", "sub/b.png"]
    check_pair(rows[0], "a red box", (4, 5), RED)
    check_pair(rows[1], "blue", (7, 3), BLUE)


def test_template_choice_is_deterministic():
    source = pairs_dataset(n=24)
    templates = ["A {caption}", "B {caption}", "C {caption}"]

    def firsts(dataset):
        return [row[0]["content"][0]["text"][0] for row in dataset["messages"]]

    chosen = firsts(load_text_to_image_pairs(source, instruction_templates=templates, seed=0))
    assert chosen == firsts(load_text_to_image_pairs(source, instruction_templates=templates, seed=0))
    assert set(chosen) == {"A", "B", "C"}  # every template is used
    assert chosen != firsts(load_text_to_image_pairs(source, instruction_templates=templates, seed=1))
    # Keyed by record id, not position: the same record gets the same template in another order.
    reversed_source = source.add_column("id", [str(i) for i in range(24)]).select(range(23, -1, -1))
    assert firsts(load_text_to_image_pairs(reversed_source, instruction_templates=templates)) == chosen[::-1]


def test_pairs_invalid_records(tmp_path, caplog):
    folder = tmp_path / "pairs"
    save_image(folder / "a.png", (4, 5), RED)
    save_image(folder / "c.png", (2, 2), GREEN)
    write_folder(
        folder,
        [
            {"file_name": "a.png", "caption": "fine"},
            {"file_name": "gone.png", "caption": "lost"},
            {"file_name": "c.png", "caption": "   "},
        ],
    )
    with pytest.raises(InvalidRecordError, match="gone.png") as error:
        load_text_to_image_pairs(folder)
    assert "missing image file" in str(error.value) and str(folder / "gone.png") in str(error.value)

    report = {}
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        dataset = load_text_to_image_pairs(folder, skip_invalid=True, report=report)
    assert dataset["id"] == ["a.png"]
    assert report["total"] == 3 and report["kept"] == 1
    assert sorted(record_id for _, record_id, _ in report["skipped"]) == ["c.png", "gone.png"]
    assert any("Skipped 2 of 3" in record.getMessage() for record in caplog.records if record.name == LOGGER)

    source = datasets.Dataset.from_dict({"caption": ["ok", ""], "image": [str(folder / "a.png")] * 2})
    with pytest.raises(InvalidRecordError, match=r"Pair #1 \(id '1'\).*empty caption"):
        load_text_to_image_pairs(source)


def test_pairs_errors(tmp_path):
    with pytest.raises(ValueError, match=r"No caption column 'text'.*\['caption', 'image'\]"):
        load_text_to_image_pairs(pairs_dataset(), caption_column="text")
    with pytest.raises(ValueError, match=r"No image column 'picture'"):
        load_text_to_image_pairs(pairs_dataset(), image_column="picture")
    with pytest.raises(ValueError, match="must be an Image"):
        load_text_to_image_pairs(datasets.Dataset.from_dict({"caption": ["x"], "image": [3]}))
    for templates in (["Draw it."], [], ["{caption} {other}"], "Draw {caption}"):
        with pytest.raises(ValueError, match="template"):
            load_text_to_image_pairs(pairs_dataset(), instruction_templates=templates)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_text_to_image_pairs(tmp_path / "nowhere")
    (tmp_path / "bare").mkdir()
    with pytest.raises(FileNotFoundError, match="No metadata.jsonl"):
        load_text_to_image_pairs(tmp_path / "bare")
    with pytest.raises(TypeError, match="DatasetDict"):
        load_text_to_image_pairs(datasets.DatasetDict({"train": pairs_dataset()}))


# ---------------------------------------------------------------------------------------------------------
# Records built in code
# ---------------------------------------------------------------------------------------------------------


def test_conversation_from_qa_and_dataset(tmp_path):
    path = save_image(tmp_path / "p.png", (5, 5), BLUE)
    with_image = conversation_from_qa(
        "What colour?", "Red.", image=Image.new("RGB", (3, 2), RED), system="Be brief."
    )
    assert with_image["messages"] == [
        {"role": "system", "content": [text_item("Be brief.")]},
        {"role": "user", "content": [image_item(), text_item("What colour?")]},
        {"role": "assistant", "content": [text_item("Red.")]},
    ]
    from_path = conversation_from_qa("And this?", "Blue.", image=path)
    text_only = conversation_from_qa("Hi?", "Hello.")
    assert text_only["images"] == [] and len(text_only["messages"]) == 2

    # Content given loosely ({"type": "image"} without text, a plain string) is completed to the schema.
    loose = {
        "messages": [
            {"role": "user", "content": "Draw."},
            {"role": "assistant", "content": [{"type": "image"}]},
        ]
    }
    loose["images"] = [str(path)]
    dataset = conversations_to_dataset([with_image, from_path, text_only, loose], ids=["a", "b", "c", "d"])
    assert dataset.features == CONVERSATION_FEATURES and dataset["id"] == ["a", "b", "c", "d"]
    assert [
        [(image.size, image.convert("RGB").getpixel((0, 0))) for image in row] for row in dataset["images"]
    ] == [
        [((3, 2), RED)],
        [((5, 5), BLUE)],
        [],
        [((5, 5), BLUE)],
    ]
    assert dataset[3]["messages"] == [
        {"role": "user", "content": [text_item("Draw.")]},
        {"role": "assistant", "content": [image_item()]},
    ]
    assert conversations_to_dataset([text_only])["id"] == ["0"]

    empty = conversations_to_dataset([])
    assert len(empty) == 0 and empty.features == CONVERSATION_FEATURES


def test_conversation_builders_errors():
    with pytest.raises(ValueError, match="`answer`"):
        conversation_from_qa("Q?", "")
    record = conversation_from_qa("Q?", "A.")
    with pytest.raises(ValueError, match="2 ids for 1 records"):
        conversations_to_dataset([record], ids=["a", "b"])
    with pytest.raises(InvalidRecordError, match=r"1 image item\(s\) but 'images' has 0"):
        conversations_to_dataset(
            [{"messages": [{"role": "user", "content": [{"type": "image"}]}], "images": []}]
        )
    with pytest.raises(InvalidRecordError, match=r"id 'x'.*unknown role 'bot'"):
        conversations_to_dataset([{"messages": [{"role": "bot", "content": "hi"}]}], ids=["x"])
