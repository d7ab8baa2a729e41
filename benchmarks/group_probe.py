"""By-hand diagnosis of a trained UniCode model: does what the LLM reads of an image carry its group?

When the tuned model answers every held-out group question with the majority group, either the image
tokens carry no group information, or Stage II has not taught the LLM to read it. A linear probe on
exactly the vectors the LLM receives for an image (`model.model.image_embeddings(codes)`, its own rows of
the visual ids), fit on the training emoji and scored on the held-out ones, tells the two apart: a probe
above the majority baseline means the information is there and the LLM's training is the limit.

`--answer_states` adds a second question: does the LLM's own computation carry the group to the place
where it starts its answer? A probe on the LLM's hidden state at the last prompt position of the Stage II
group question (after its middle layer, and after its last), frozen and never trained for it, tells
"the signal never reaches the answer" apart from "the answer head has not learned to say it".

    . .venv/bin/activate
    python benchmarks/group_probe.py runs/quickstart/model          # ~2 minutes on 2 cores
    python benchmarks/group_probe.py runs/tokenizer --tokenizer --answer_states   # + SmolLM2 as shipped, ~10 min
"""

from __future__ import annotations

import argparse
from collections import Counter

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from transformers_unicode import UniCodeForCausalLM, UniCodeVisualTokenizer, load_llm
from transformers_unicode.data.conversations import chat_messages
from transformers_unicode.data.openmoji_conversations import openmoji_conversations
from transformers_unicode.evaluation.stage2 import exact_match_accuracy
from transformers_unicode.loading import load_unicode_folder
from transformers_unicode.training.stage1 import load_image_dataset


@torch.no_grad()
def image_inputs(model, processor, images, batch_size: int = 64) -> tuple[torch.Tensor, np.ndarray]:
    """`(codes (B, h*w*D), LLM input vectors (B, h*w*c))` of every image, through the processor as in Stage II."""
    codes, vectors = [], []
    for start in range(0, len(images), batch_size):
        batch_codes = processor.encode_images(images[start : start + batch_size])  # (B, h, w, D)
        codes.append(batch_codes.flatten(1))
        vectors.append(model.model.image_embeddings(batch_codes).flatten(1).float())
    return torch.cat(codes), torch.cat(vectors).numpy()


@torch.no_grad()
def answer_states(model, processor, images, batch_size: int = 16) -> dict[str, np.ndarray]:
    """The LLM's hidden state at the last prompt position of the Stage II group question, per image.

    Where the first answer token is predicted: after the middle layer and after the last (with its final norm,
    what the LM head reads).
    """
    questions = openmoji_conversations("group", images=images)
    layers = model.config.text_config.num_hidden_layers
    picked = {f"layer {layers // 2} of {layers}": layers // 2, f"layer {layers} of {layers}": layers}
    states = {name: [] for name in picked}
    for begin in range(0, len(questions), batch_size):
        batch = questions.select(range(begin, min(begin + batch_size, len(questions))))
        prompts = [
            processor.apply_chat_template(
                chat_messages(record["messages"][:1]), add_generation_prompt=True, tokenize=False
            )
            for record in batch
        ]
        inputs = processor(images=[record["images"] for record in batch], text=prompts, return_tensors="pt")
        last = inputs["attention_mask"].sum(-1) - 1  # every group prompt has the same length: no padding
        hidden = model(**inputs, output_hidden_states=True, logits_to_keep=1).hidden_states
        for name, layer in picked.items():
            states[name].append(hidden[layer][torch.arange(len(last)), last].float())
    return {name: torch.cat(rows).numpy() for name, rows in states.items()}


def bag_of_codes(codes: torch.Tensor, vocabulary: torch.Tensor) -> np.ndarray:
    """Counts of each id of `vocabulary` per image: the codes without their positions."""
    index = torch.searchsorted(vocabulary, codes)
    counts = torch.zeros(codes.shape[0], vocabulary.numel())
    return counts.scatter_add_(1, index, torch.ones_like(codes, dtype=counts.dtype)).numpy()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a saved UniCode model folder (e.g. runs/quickstart/model)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--fit_limit",
        type=int,
        nargs="*",
        default=[],
        help="also fit on this many random training emoji (e.g. 200: about what Stage II's LLM sees)",
    )
    parser.add_argument(
        "--tokenizer",
        action="store_true",
        help="MODEL is a Stage I visual tokenizer folder: assemble it with the embedded SmolLM2, untuned",
    )
    parser.add_argument(
        "--answer_states",
        action="store_true",
        help="also probe the LLM's hidden state where it starts answering the group question",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.tokenizer:
        llm, llm_tokenizer = load_llm("embedded")
        visual = UniCodeVisualTokenizer.from_pretrained(args.model)
        model, processor = UniCodeForCausalLM.from_llm(
            llm, visual, tokenizer=llm_tokenizer, return_processor=True
        )
    else:
        model, processor = load_unicode_folder(args.model)
    model.eval()
    size = model.visual_tokenizer.config.image_size
    train = load_image_dataset("openmoji", "train", size)
    test = load_image_dataset("openmoji", "test", size)
    train_codes, train_vectors = image_inputs(model, processor, train["image"])
    test_codes, test_vectors = image_inputs(model, processor, test["image"])
    train_groups, test_groups = np.asarray(train["group"]), test["group"]
    vocabulary = torch.unique(torch.cat([train_codes.flatten(), test_codes.flatten()]))
    majority = Counter(test_groups).most_common(1)[0][1] / len(test_groups)
    print(
        f"{args.model}: group of {len(test_groups)} held-out emoji from a probe fit on {len(train_groups)} "
        f"training emoji; majority baseline {majority:.1%}, chance balanced {1 / len(set(train_groups)):.1%}"
    )
    features = {
        "bag of codes (ids, no positions)": (
            bag_of_codes(train_codes, vocabulary),
            bag_of_codes(test_codes, vocabulary),
        ),
        "the LLM's input vectors (all positions)": (train_vectors, test_vectors),
    }
    if args.answer_states:
        train_states, test_states = (
            answer_states(model, processor, train),
            answer_states(model, processor, test),
        )
        for name in train_states:
            features[f"hidden state at the answer, {name}"] = (train_states[name], test_states[name])
    subsets = {len(train_groups): np.arange(len(train_groups))}
    rng = np.random.default_rng(0)
    for limit in args.fit_limit:
        subsets[limit] = rng.choice(len(train_groups), min(limit, len(train_groups)), replace=False)
    for name, (fit_on, score_on) in features.items():
        for size, rows in subsets.items():
            probe = LogisticRegression(max_iter=2000)
            if name.startswith(
                "hidden state"
            ):  # a few of an LLM's hidden dimensions are outliers: standardise
                probe = make_pipeline(StandardScaler(), probe)
            probe.fit(fit_on[rows], train_groups[rows])
            scores = exact_match_accuracy(probe.predict(score_on).tolist(), test_groups)
            print(
                f"  {name:<42} fit on {size:>5}: accuracy {scores['accuracy']:6.1%}   "
                f"balanced {scores['balanced_accuracy']:6.1%}"
            )


if __name__ == "__main__":
    main()
