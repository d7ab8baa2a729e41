"""Can Stage II memorise a few images at all? The issue-14 diagnosis, by hand (SmolLM2, minutes on 2 cores).

32 training emoji, 8 from each of 4 CLDR groups (chance 25 %), asked their group; a fresh SmolLM2 tuned on
those questions alone through the shipped path (`tokenize_conversations`, `UniCodeDataCollator`,
`UniCodeSFTTrainer`), batch 8, constant learning rate, scored by greedy exact match on the same 32 every
`--eval_every` steps. `--text_control` writes each emoji's name as text where the image was: the same recipe
on an input the LLM already reads, which tells a broken label/loss path from a weak image signal.
`--task drawing` memorises 4 drawings instead (one training emoji per group, "Draw the emoji: NAME."), batch 4,
scored by `drawing_code_accuracy`: the share of the h*w*D code ids a greedy drawing writes exactly.
`--attention` only prints, before any tuning, how much attention the position that writes the answer gives
the image positions in each layer.

    . .venv/bin/activate
    python benchmarks/stage2_memorisation.py --kind full --lr 1e-4 --epochs 10
    python benchmarks/stage2_memorisation.py --kind full --lr 1e-4 --epochs 10 --text_control
    python benchmarks/stage2_memorisation.py --kind lora --lr 5e-4 --epochs 15 --eval_every 15
    python benchmarks/stage2_memorisation.py --attention
    python benchmarks/stage2_memorisation.py --task drawing --kind full --lr 1e-4 --epochs 60 --eval_every 20

Without `--tokenizer` the visual tokenizer is untrained (seeded): its codes still differ from image to
image, which is all memorisation needs.
"""

from __future__ import annotations

import argparse
import os
import sys

import datasets
import torch
from transformers import TrainerCallback

sys.path.insert(0, os.path.dirname(__file__))
from stage2_learning_curve import KINDS, trainable  # noqa: E402

from transformers_unicode import UniCodeForCausalLM, UniCodeVisualTokenizer, load_llm, load_openmoji  # noqa: E402
from transformers_unicode.data.conversations import CONVERSATION_FEATURES  # noqa: E402
from transformers_unicode.data.openmoji_conversations import (  # noqa: E402
    TEXT_TO_IMAGE_PROMPT,
    group_question,
    openmoji_conversations,
)
from transformers_unicode.evaluation.stage2 import (  # noqa: E402
    answer_questions,
    drawing_code_accuracy,
    exact_match_accuracy,
)
from transformers_unicode.training.collator import UniCodeDataCollator  # noqa: E402
from transformers_unicode.training.sft_data import tokenize_conversations  # noqa: E402
from transformers_unicode.training.stage1 import TokenizerTrainingArguments  # noqa: E402
from transformers_unicode.training.stage2 import UniCodeSFTTrainer  # noqa: E402

GROUPS = ("Smileys & Emotion", "Animals & Nature", "Food & Drink", "Objects")


def build(tokenizer_folder: str | None):
    llm, llm_tokenizer = load_llm("embedded")
    if tokenizer_folder:
        visual = UniCodeVisualTokenizer.from_pretrained(tokenizer_folder)
    else:
        torch.manual_seed(0)
        config = TokenizerTrainingArguments().tokenizer_config()
        visual = UniCodeVisualTokenizer.from_llm(llm, config, tokenizer=llm_tokenizer)
    return UniCodeForCausalLM.from_llm(llm, visual, tokenizer=llm_tokenizer, return_processor=True)


def memorisation_set(per_group: int = 8):
    train = load_openmoji("train", size=64)
    chosen = [
        i for group in GROUPS for i in [j for j, g in enumerate(train["group"]) if g == group][:per_group]
    ]
    return train.select(chosen)


def text_questions(emoji):
    """The group question with the emoji's name written where the image was."""

    def record(row):
        question = f"Emoji: {row['name']}. {group_question()}"
        messages = [
            {"role": "user", "content": [{"type": "text", "text": question}]},
            {"role": "assistant", "content": [{"type": "text", "text": row["group"]}]},
        ]
        return {"messages": messages, "images": [], "id": row["emoji"]}

    return emoji.map(record, remove_columns=emoji.column_names, features=CONVERSATION_FEATURES)


@torch.no_grad()
def attention_on_image(model, processor, emoji) -> None:
    model.model.language_model.set_attn_implementation("eager")
    samples = tokenize_conversations(
        openmoji_conversations("group", images=emoji.select(range(4))), processor
    )
    batch = UniCodeDataCollator.from_processor(processor)(list(samples))
    ids = batch["input_ids"]
    out = model.model(input_ids=ids, attention_mask=batch["attention_mask"], output_attentions=True)
    image = model.model.image_input_mask(ids)[0]
    answer = (
        int((batch["labels"][0] != -100).nonzero()[0]) - 1
    )  # the position that writes the first answer token
    print(f"{ids.shape[1]} tokens, {int(image.sum())} image positions; attention of position {answer}:")
    for layer, weights in enumerate(out.attentions):
        row = weights[:, :, answer]  # (B, heads, L)
        print(
            f"layer {layer:2d}: on the image {row[..., image].sum(-1).mean():.3f}   on the first token {row[..., 0].mean():.3f}"
        )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", choices=KINDS, default="full")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--eval_every", type=int, default=8, help="steps between scores")
    parser.add_argument("--task", choices=("group", "drawing"), default="group")
    parser.add_argument("--text_control", action="store_true")
    parser.add_argument("--attention", action="store_true")
    parser.add_argument("--tokenizer", default=None, help="a Stage I folder (default: untrained, seeded)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, processor = build(args.tokenizer)
    emoji = memorisation_set()
    if args.attention:
        attention_on_image(model, processor, emoji)
        return
    batch_size = 8
    if args.task == "drawing":
        emoji = emoji.select([8 * group for group in range(len(GROUPS))])  # one emoji of each group
        questions = openmoji_conversations("text_to_image", images=emoji)
        samples = tokenize_conversations(questions, processor, task="text_to_image")
        batch_size = len(emoji)
    else:
        questions = (
            text_questions(emoji) if args.text_control else openmoji_conversations("group", images=emoji)
        )
        samples = tokenize_conversations(questions, processor, task="group")
    dataset = datasets.concatenate_datasets([samples] * args.epochs).shuffle(seed=0).flatten_indices()

    def score(model):
        model.eval()
        if args.task == "drawing":
            prompts = [TEXT_TO_IMAGE_PROMPT.format(name=name) for name in emoji["name"]]
            accuracy = drawing_code_accuracy(model, processor, prompts, emoji["image"])
            print(f"greedy drawings: {accuracy:.1%} of the code ids right", flush=True)
        else:
            answers = answer_questions(model, processor, questions, max_new_tokens=8)
            accuracy = exact_match_accuracy(answers, emoji["group"])["accuracy"]
            print(f"training exact match {accuracy:.1%}; first answers {answers[:4]}", flush=True)
        model.train()

    class Score(TrainerCallback):
        def on_step_end(self, args_, state, control, model=None, **kwargs):
            if state.global_step % args.eval_every == 0:
                print(f"step {state.global_step}:", end=" ")
                score(model)

    from trl import SFTConfig

    training_args = SFTConfig(
        output_dir=os.path.join("runs", "stage2_memorisation"),
        per_device_train_batch_size=batch_size,
        num_train_epochs=1,
        learning_rate=args.lr,
        lr_scheduler_type="constant",
        logging_steps=1,
        save_strategy="no",
        activation_checkpointing=False,
        max_length=None,
        remove_unused_columns=False,
        dataset_kwargs={"skip_prepare_dataset": True},
        use_cpu=True,
        bf16=False,
        report_to="none",
        disable_tqdm=True,
        seed=0,
    )
    trainer = UniCodeSFTTrainer(
        model=trainable(model, args.kind),
        args=training_args,
        train_dataset=dataset,
        processing_class=processor,
        data_collator=UniCodeDataCollator.from_processor(processor),
        callbacks=[Score()],
    )
    trainer.train()


if __name__ == "__main__":
    main()
