"""What a Stage II sample costs, against the floor of a plain causal LM on the same tokens.

A measurement script, not a test: it prints tables and ratios and never fails on them.

    . .venv/bin/activate
    python benchmarks/stage2_step_cost.py              # SmolLM2; ~5 minutes on 2 idle cores
    python benchmarks/stage2_step_cost.py --tiny       # tiny random Llama: checks the script in seconds
    python benchmarks/stage2_step_cost.py --padding_only   # only the padding table (~1 min)

1. Step cost. For real Stage II batches (the library's OpenMoji `group` questions and `text_to_image`
   drawings, collated with their labels), one training step (forward, loss, backward) of:
   - the floor: a plain `AutoModelForCausalLM` SmolLM2, no UniCode code at all, on a batch of the same
     shape and attention mask, with the same supervised positions; the image positions hold ordinary
     text ids instead of packed image ids. It computes its loss as transformers does (full logits);
   - Stage II as `UniCodeSFTTrainer` runs it (`skip_logits`: the LM head on the supervised positions only).
   Rounds alternate the order of the two, so drift in the machine's speed falls on both. The ratio is per
   non-pad token (both batches hold the same number), and the issue's target is <= 1.15x.
2. Tokens that buy nothing, counted on the quickstart's mixture:
   - the chat template's default system prompt (SmolLM2's writes one when a conversation has none);
   - padding in batches of 8: random batches, `group_by_length` (transformers' `LengthGroupedSampler`) on
     each sample's exact length and on the mixture's `length` column (one key a task, so that no task is
     sorted by its answers; what the quickstart uses), and padding-free packing (no padding; the bound).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from _machine import cpu_model, package_versions
from sft_head import batches, build


def floor_model(tiny: bool, unicode_model):
    """The same LLM as a plain causal LM: SmolLM2 loaded by transformers alone, or the tiny one's twin."""
    from transformers import AutoModelForCausalLM

    if tiny:
        model = AutoModelForCausalLM.from_config(unicode_model.config.text_config)
        model.model.load_state_dict(unicode_model.model.language_model.state_dict())
        model.lm_head.weight = model.model.embed_tokens.weight
        return model
    from transformers_unicode.modeling.llm_utils import embedded_llm_location

    folder, gguf_file = embedded_llm_location()
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file, dtype=torch.float32)
    # The processor's image markers are ids past SmolLM2's 49,152; the floor gets the same rows.
    model.resize_token_embeddings(unicode_model.config.text_config.vocab_size, mean_resizing=False)
    return model


def as_text_batch(batch, vocab_size: int, seed: int = 0):
    """The batch with every packed image id replaced by an ordinary text id (same shape, mask and labels)."""
    generator = torch.Generator().manual_seed(seed)
    ids = batch["input_ids"].clone()
    image = ids >= vocab_size
    ids[image] = torch.randint(3, vocab_size - 3, (int(image.sum()),), generator=generator)
    labels = batch["labels"].clone()  # a drawing's targets are its image ids: the same text ids stand in
    labels[image] = torch.where(labels[image] == -100, labels[image], ids[image])
    return {"input_ids": ids, "attention_mask": batch["attention_mask"], "labels": labels}


def train_step(model, batch, **kwargs) -> float:
    model.zero_grad(set_to_none=True)
    loss = model(**batch, **kwargs).loss
    loss.backward()
    return float(loss.detach())


def padding_table(processor, batch_size: int, samples: int) -> list[str]:
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from transformers_unicode.training.quickstart import QuickstartArguments
    from transformers_unicode.training.stage2 import SFTScriptArguments, build_sft_dataset

    script = SFTScriptArguments(mixture=QuickstartArguments().mixture, num_samples=samples, eval_limit=0)
    dataset = build_sft_dataset(script, processor, None, {})
    lengths = np.asarray([len(ids) for ids in dataset["input_ids"]])
    tokens = int(lengths.sum())

    def padded(order):
        total = 0
        for begin in range(0, len(order), batch_size):
            chunk = lengths[order[begin : begin + batch_size]]
            total += int(chunk.max()) * len(chunk)
        return total

    def grouped(keys):
        torch.manual_seed(0)
        return padded(np.asarray(list(LengthGroupedSampler(batch_size, lengths=list(keys)))))

    rng = np.random.default_rng(0)
    random_total = np.mean([padded(rng.permutation(len(lengths))) for _ in range(5)])
    by_exact, by_task = grouped(lengths.tolist()), grouped(dataset["length"])
    rows = [
        f"| random batches | {random_total:.0f} | {1 - tokens / random_total:.1%} |",
        f"| group_by_length on exact lengths (sorts group questions by answer) | {by_exact} | {1 - tokens / by_exact:.1%} |",
        f"| group_by_length on the mixture's `length` (one key a task; the quickstart's) | {by_task} | {1 - tokens / by_task:.1%} |",
        f"| padding-free (bound) | {tokens} | 0.0% |",
    ]
    return [
        f"Quickstart mixture, {len(lengths)} samples of {tokens} tokens, batches of {batch_size}:",
        "| batching | tokens computed | of which padding |",
        "|---|---|---|",
        *rows,
    ]


def system_prompt_line(processor) -> str:
    from transformers_unicode import load_llm

    user = [{"role": "user", "content": "Which emoji group is this?"}]
    ours = len(processor.tokenizer.apply_chat_template(user, tokenize=True, return_dict=True)["input_ids"])
    try:
        _, llm_tokenizer = load_llm("embedded")
    except FileNotFoundError:
        return "system prompt: the embedded LLM is not installed"
    theirs = len(llm_tokenizer.apply_chat_template(user, tokenize=True, return_dict=True)["input_ids"])
    return (
        f"Default system prompt: SmolLM2's own template writes {theirs - ours} tokens of it into a conversation "
        f"without one; the processor's template writes {ours} tokens for this one-turn question, none of them "
        "a system prompt."
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--mixture-samples", type=int, default=400)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument(
        "--padding_only", action="store_true", help="only count the mixture's padding (no timing; ~1 min)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, processor = build(args.tiny)
    if args.padding_only:
        print("\n".join(padding_table(processor, args.batch_size, args.mixture_samples)))
        return
    floor = floor_model(args.tiny, model)
    model.train()
    floor.train()
    vocab = model.config.text_config.vocab_size
    print(f"# {cpu_model()}, {args.threads} threads; {package_versions('torch', 'transformers', 'trl')}")
    print(
        "| batch | non-pad tokens | targets | floor (plain LM) | Stage II step | per-token ratio | target |"
    )
    print("|---|---|---|---|---|---|---|")
    for task, batch in batches(processor, args.batch_size).items():
        text_batch = as_text_batch(batch, vocab)
        tokens, targets = int(batch["attention_mask"].sum()), int((batch["labels"][:, 1:] != -100).sum())
        runs = {
            "floor": lambda b=text_batch: train_step(floor, b),
            "ours": lambda b=batch: train_step(model, b),
        }
        for run in runs.values():
            run()  # warm-up
        times = {name: [] for name in runs}
        for round_index in range(args.repeats):
            for name in sorted(runs, reverse=bool(round_index % 2)):
                start = time.perf_counter()
                runs[name]()
                times[name].append(time.perf_counter() - start)
        median = {name: statistics.median(t) for name, t in times.items()}
        ratio = median["ours"] / median["floor"]
        print(
            f"| {task} x{args.batch_size} | {tokens} | {targets} | {median['floor'] * 1000:.0f} ms | "
            f"{median['ours'] * 1000:.0f} ms | {ratio:.2f}x | {'PASS' if ratio <= 1.15 else 'MISS'} (<= 1.15x) |"
        )
    print()
    if not args.tiny:
        print(system_prompt_line(processor))
        print()
        print("\n".join(padding_table(processor, args.batch_size, args.mixture_samples)))


if __name__ == "__main__":
    main()
