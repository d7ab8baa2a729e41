"""The model card a saved UniCode folder carries (README.md with hub metadata and runnable usage).

The card is written for a Hub user who has only `pip`: one install line, the `trust_remote_code` usage, the
pipeline usage, and what the model can and cannot do, with the figures the quickstart measured when it wrote
the folder (`build_model_card(config, report=...)`), or a plain "not measured" when nothing did.
"""

from __future__ import annotations

import json
import os

from huggingface_hub import ModelCard, ModelCardData

OPENMOJI_CREDIT = (
    "The visual tokenizer and the instruction data were built from [OpenMoji](https://openmoji.org), the "
    "open-source emoji and icon project, licensed under CC BY-SA 4.0; derived images carry that licence."
)

# What the folder's own code (copied beside the weights) imports, with the versions transformers_unicode is
# tested with. diffusers: the visual tokenizer's encoder and decoder blocks; pillow: the image processor.
INSTALL = 'pip install "torch>=2.4" "transformers>=5.23" "diffusers>=0.42" pillow'

USAGE = """```python
import torch
from PIL import Image
from transformers import AutoModelForCausalLM, AutoProcessor

folder = "{repo}"
model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)
processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)

# understanding: the image becomes the model's own token ids inside the prompt
image = Image.new("RGB", (64, 64), "white")
inputs = processor(images=image, text="<image>What is this?", return_tensors="pt")
print(processor.decode(model.generate(**inputs, max_new_tokens=20)[0]))

# text to image: generate writes one image span of code ids, the processor decodes it to pixels
torch.manual_seed(0)
ids = model.generate(**processor(text="a red apple", return_tensors="pt"), generation_mode="image", guidance_scale=3.0)
processor.decode_images(ids)[0].save("apple.png")
```"""

PIPELINE_USAGE = """```python
from PIL import Image
from transformers import pipeline

captioner = pipeline("image-text-to-text", model="{repo}", trust_remote_code=True)  # or "image-to-text"
image = Image.new("RGB", (64, 64), "white")
print(captioner(image, text="<image>What is this?", max_new_tokens=20, return_full_text=False))
```"""


def _percent(value: float) -> str:
    return f"{100 * value:.1f} %"


def _target(report: dict, name: str) -> str:
    target = report.get("targets", {}).get(name)
    if target is None:
        return ""
    if name.endswith("psnr"):
        value = f"{target['target']:g} dB"
    elif name.endswith("ratio"):
        value = f"{target['target']:g}x"
    else:
        value = _percent(target["target"])
    sign = "<=" if target.get("direction") == "at_most" else ">="
    return f"{sign} {value}: **{'met' if target['met'] else 'missed'}**"


def measured_section(report: dict | None) -> list[str]:
    """ "What it can and cannot do": the quickstart's figures from its report.json, or "not measured"."""
    lines = [
        "## What it can and cannot do",
        "",
        "- **Can:** read an image as its own token ids (understanding prompts with `<image>`), reconstruct an "
        'image through those ids, and write an image with `generate(..., generation_mode="image")` at the visual '
        "tokenizer's size.",
        '- **Pipelines:** `pipeline("image-text-to-text")` (alias `"image-to-text"`) for understanding. '
        "Text-to-image has no transformers pipeline: use `generate` as above (the `transformers_unicode` "
        "package adds `UniCodeTextToImagePipeline`).",
    ]
    if report is None:
        lines += [
            "- **Measured:** not measured. This folder was not written by the `transformers-unicode quickstart` "
            "evaluation, so the card has no figures; `transformers-unicode eval FOLDER` measures it.",
        ]
        return lines
    metrics = report.get("metrics", {})
    reconstruction = metrics.get("reconstruction", {})
    group = metrics.get("understanding", {}).get("group", {})
    subgroup = metrics.get("understanding", {}).get("subgroup", {})
    drawing = metrics.get("generation", {}).get("training_prompts", {})
    held_out_drawing = metrics.get("generation", {}).get("held_out_prompts_group", {})
    device = report.get("configuration", {}).get("device", "unknown device")
    rows = [
        (
            f"held-out reconstruction PSNR ({reconstruction.get('count', '?')} emoji, image -> LLM ids -> image)",
            f"{reconstruction['psnr']:.2f} dB" if "psnr" in reconstruction else "not measured",
            _target(report, "held_out_psnr"),
        ),
        (
            "held-out SSIM / visual ids in use",
            f"{reconstruction['ssim']:.3f} / {_percent(reconstruction['codebook_usage'])}"
            if "ssim" in reconstruction and "codebook_usage" in reconstruction
            else "not measured",
            "",
        ),
        (
            "rFID",
            f"{reconstruction['rfid']:.2f}" if reconstruction.get("rfid") is not None else "not measured",
            "",
        ),
        (
            f"held-out CLDR group questions, exact match ({group.get('count', '?')} emoji)",
            f"{_percent(group['exact_match'])} (majority baseline {_percent(group['majority_baseline'])}, "
            f"balanced accuracy {_percent(group['balanced_accuracy'])})"
            if {"exact_match", "majority_baseline", "balanced_accuracy"} <= set(group)
            else "not measured",
            _target(report, "held_out_group_accuracy"),
        ),
        (
            "held-out CLDR subgroup questions, exact match",
            _percent(subgroup["exact_match"]) if "exact_match" in subgroup else "not measured",
            "",
        ),
        (
            f"drawing training names: the named emoji in the top 5 of {drawing.get('candidates', '?')} renders",
            _percent(drawing["top5"]) if "top5" in drawing else "not measured",
            _target(report, "generation_top5_training_prompts"),
        ),
        (
            "drawing held-out names: the named group in the top 5",
            _percent(held_out_drawing["top5"]) if "top5" in held_out_drawing else "not measured",
            "",
        ),
    ]
    missed = [name for name, target in report.get("targets", {}).items() if not target.get("met")]
    lines += [
        "",
        f"Measured by the `transformers-unicode quickstart` evaluation that wrote this folder (its report.json; "
        f"held-out = OpenMoji emoji that neither training stage saw; {device}):",
        "",
        "| measure | reached | target |",
        "|---|---|---|",
        *(f"| {name} | {value} | {target} |" for name, value, target in rows),
        "",
    ]
    cannot = []
    if "held_out_psnr" in missed and "psnr" in reconstruction:
        cannot.append(f"its reconstructions stay under the PSNR target ({reconstruction['psnr']:.2f} dB)")
    if "held_out_group_accuracy" in missed and "exact_match" in group:
        cannot.append(
            f"it does not reliably answer questions about an image: {_percent(group['exact_match'])} "
            f"on group questions against a majority baseline of {_percent(group.get('majority_baseline', 0))}"
        )
    if "top5" in drawing and drawing["top5"] < 0.5:
        cannot.append(
            f"its drawings are not yet recognisable: the named emoji is among the 5 nearest real renders for "
            f"{_percent(drawing['top5'])} of prompts"
        )
    if cannot:
        lines.append("**Cannot yet** (the missed targets): " + "; ".join(cannot) + ".")
    elif not missed:
        lines.append("Every target above was met.")
    return lines


REPORT_FILE = "report.json"  # the quickstart's measurements, kept beside the weights they measure


def read_report(folder: str | None) -> dict | None:
    """The measurements saved in a model folder (`REPORT_FILE`), or None where it has none (or is no folder)."""
    path = os.path.join(folder, REPORT_FILE) if folder else None
    if path is None or not os.path.isfile(path):
        return None
    with open(path) as file:
        return json.load(file)


def build_model_card(config, repo: str = ".", report: dict | None = None) -> ModelCard:
    """The card for a UniCode folder.

    Metadata from the config: base model, datasets (with the OpenMoji credit when trained on it). `report` is
    the quickstart's report.json (its figures go into "What it can and cannot do"); without it the card says
    the model was not measured.
    """
    datasets = list(config.training_datasets or [])
    trained_on_openmoji = any("openmoji" in name.lower() for name in datasets)
    data = ModelCardData(
        library_name="transformers",
        pipeline_tag="image-text-to-text",
        base_model=config.base_model or None,
        license="cc-by-sa-4.0" if trained_on_openmoji else "apache-2.0",
        datasets=datasets or None,
        tags=[
            "unicode",
            "transformers_unicode",
            "multimodal",
            "text-to-image",
            "visual-tokenizer",
            "custom_code",
        ],
    )
    visual = config.visual_config
    body = [
        "# UniCode",
        "",
        "A causal LM that reads and writes images as its own token ids: the visual tokenizer's codebook is the "
        "LLM's input-embedding table (UniCode, arXiv 2403.09072). Built with the `transformers_unicode` "
        "library.",
        "",
        f"- Base LLM: `{config.base_model or 'unknown'}`; architecture `{config.text_config.model_type}`.",
        f"- Visual tokenizer: {visual.quantizer.upper()}, {visual.image_size}x{visual.image_size} px -> "
        f"{visual.latent_size}x{visual.latent_size} positions x {visual.codes_per_position} codes "
        f"({visual.num_visual_codes} visual ids); the LLM reads {config.image_seq_length} positions per image "
        f"and writes {config.image_generation_length} ids.",
        "",
        "## Install",
        "",
        "The model's code comes with its weights (`trust_remote_code=True`); it needs:",
        "",
        "```bash",
        INSTALL,
        "```",
        "",
        "## Usage",
        "",
        USAGE.replace("{repo}", repo),
        "",
        "With the `transformers_unicode` package installed, `import transformers_unicode` registers the same "
        "classes and `trust_remote_code` is not needed.",
        "",
        "## Pipeline",
        "",
        PIPELINE_USAGE.replace("{repo}", repo),
        "",
        *measured_section(report),
    ]
    if trained_on_openmoji:
        body += ["", "## Credits", "", OPENMOJI_CREDIT]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body) + "\n")
