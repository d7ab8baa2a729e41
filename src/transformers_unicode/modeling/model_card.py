"""The model card a saved UniCode folder carries (README.md with hub metadata and runnable usage)."""

from __future__ import annotations

from huggingface_hub import ModelCard, ModelCardData

OPENMOJI_CREDIT = (
    "The visual tokenizer and the instruction data were built from [OpenMoji](https://openmoji.org), the "
    "open-source emoji and icon project, licensed under CC BY-SA 4.0; derived images carry that licence."
)

USAGE = """```python
import torch
import transformers_unicode  # registers the UniCode classes (or pass trust_remote_code=True instead)
from PIL import Image
from transformers import AutoModelForCausalLM, AutoProcessor

folder = "{repo}"
model = AutoModelForCausalLM.from_pretrained(folder)
processor = AutoProcessor.from_pretrained(folder)

# understanding
image = Image.new("RGB", (64, 64), "white")
inputs = processor(images=image, text="<image>What is this?", return_tensors="pt")
print(processor.decode(model.generate(**inputs, max_new_tokens=20)[0]))

# text to image
torch.manual_seed(0)
ids = model.generate(**processor(text="a red apple", return_tensors="pt"), generation_mode="image", guidance_scale=3.0)
processor.decode_images(ids)[0].save("apple.png")
```"""


def build_model_card(config, repo: str = ".") -> ModelCard:
    """Metadata from the config: base model, datasets (with the OpenMoji credit when trained on it)."""
    datasets = list(config.training_datasets or [])
    trained_on_openmoji = any("openmoji" in name.lower() for name in datasets)
    data = ModelCardData(
        library_name="transformers",
        pipeline_tag="image-text-to-text",
        base_model=config.base_model or None,
        license="cc-by-sa-4.0" if trained_on_openmoji else "apache-2.0",
        datasets=datasets or None,
        tags=["unicode", "transformers_unicode", "multimodal", "text-to-image", "visual-tokenizer"],
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
        "## Usage",
        "",
        USAGE.replace("{repo}", repo),
    ]
    if trained_on_openmoji:
        body += ["", "## Credits", "", OPENMOJI_CREDIT]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body) + "\n")
