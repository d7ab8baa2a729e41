"""Text to image as a diffusers pipeline: a thin wrapper over `generate(generation_mode="image")`.

Users of diffusers expect `pipe(prompt, guidance_scale=..., generator=...).images`; the work itself is
the model's `generate` and the processor's `decode_images`.
"""

from __future__ import annotations

import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput


class UniCodeTextToImagePipeline(DiffusionPipeline):
    r"""
    Text-to-image with a [`UniCodeForCausalLM`] and its [`UniCodeProcessor`].

    Example:

    ```python
    >>> pipe = UniCodeTextToImagePipeline(model=model, processor=processor)
    >>> image = pipe("a red apple", guidance_scale=3.0, generator=torch.Generator().manual_seed(0)).images[0]
    >>> pipe.save_pretrained("pipe"); pipe = UniCodeTextToImagePipeline.from_pretrained("pipe")
    ```
    """

    def __init__(self, model, processor):
        super().__init__()
        self.register_modules(model=model, processor=processor)

    def prompt_text(self, prompt: str, use_chat_template: bool = True) -> str:
        """The user turn of a chat whose assistant answer is the image (the Stage II text-to-image format)."""
        if not use_chat_template:
            return prompt
        messages = [{"role": "user", "content": prompt}]
        return self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        guidance_scale: float = 3.0,
        num_images_per_prompt: int = 1,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
        top_k: int | None = None,
        use_chat_template: bool = True,
        output_type: str = "pil",
        return_dict: bool = True,
    ):
        """
        Args:
            prompt (`str` or `list[str]`): what to draw.
            guidance_scale (`float`, *optional*, defaults to 3.0): classifier-free guidance; 1.0 turns it off.
            num_images_per_prompt (`int`, *optional*, defaults to 1): images sampled for each prompt.
            generator (`torch.Generator`, *optional*): makes the sampling reproducible (its seed seeds
                `generate`, whose sampling draws from torch's global generator).
            temperature, top_k: sampling controls passed to `generate`.
            use_chat_template (`bool`, *optional*, defaults to `True`): wrap the prompt as a user turn.
            output_type (`str`, *optional*, defaults to `"pil"`): `"pil"` or `"np"`.
        """
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        if not prompts or any(not isinstance(p, str) or not p.strip() for p in prompts):
            raise ValueError("prompt must be a non-empty string or a list of them.")
        texts = [
            self.prompt_text(p, use_chat_template) for p in prompts for _ in range(num_images_per_prompt)
        ]
        inputs = self.processor(text=texts, return_tensors="pt").to(self.model.device)
        sampling = {"temperature": temperature, "top_k": top_k, "guidance_scale": guidance_scale}
        with torch.random.fork_rng(devices=[]):
            if generator is not None:
                torch.manual_seed(generator.initial_seed())
            ids = self.model.generate(**inputs, generation_mode="image", **sampling)
        images = self.processor.decode_images(ids, output_type=output_type)
        return ImagePipelineOutput(images=images) if return_dict else (images,)


__all__ = ["UniCodeTextToImagePipeline"]
