"""Does the LLM keep its language through Stage II? Perplexity on a fixed English text.

The text is the Python language reference's topic pages that every Python installation ships
(`pydoc_data.topics`, the text behind `help("assert")`): English prose with some code, never seen by Stage II,
and the same on every machine without a download. The first `max_tokens` tokens of the pages, in sorted
order, are scored in non-overlapping windows; a tuned model is compared with the untuned LLM on exactly
the same tokens.
"""

from __future__ import annotations

import math

import torch

DEFAULT_LANGUAGE_TOKENS = 20480


def language_text() -> str:
    """The held-out English text: every `pydoc_data` topic page, in sorted order of its name."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[name] for name in sorted(topics))


@torch.no_grad()
def language_perplexity(
    model, tokenizer, max_tokens: int = DEFAULT_LANGUAGE_TOKENS, window: int = 512, batch_size: int = 2
) -> dict:
    """Perplexity of `model` (any causal LM, or a `UniCodeForCausalLM`) on the first `max_tokens` tokens.

    Args:
        model: returns `.logits` for `input_ids`.
        tokenizer: the LLM's tokenizer (or the processor's).
        max_tokens (`int`): scored in `max_tokens // window` windows; each window's first token is context only.
        window (`int`): tokens per window.
    """
    if max_tokens < window or max_tokens % window:
        raise ValueError(f"max_tokens must be a positive multiple of window={window}; got {max_tokens}.")
    ids = tokenizer(language_text(), add_special_tokens=False)["input_ids"]
    if len(ids) < max_tokens:
        raise ValueError(f"The language text has {len(ids)} tokens for this tokenizer; ask for at most that.")
    windows = torch.as_tensor(ids[:max_tokens]).view(-1, window)  # (W, window)
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for begin in range(0, windows.shape[0], batch_size):
        batch = windows[begin : begin + batch_size].to(model.device)
        logits = model(input_ids=batch).logits[:, :-1].float()  # (B, window - 1, V)
        targets = batch[:, 1:]
        total += float(torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, reduction="sum"))
        count += targets.numel()
    model.train(was_training)
    return {"perplexity": math.exp(total / count), "tokens": count, "windows": windows.shape[0]}


__all__ = ["DEFAULT_LANGUAGE_TOKENS", "language_perplexity", "language_text"]
