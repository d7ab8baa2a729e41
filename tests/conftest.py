"""Shared tiny fixtures: a random Llama with a 128-id vocabulary and tokenizers built from it."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, TrainerCallback

from transformers_unicode import UniCodeVisualTokenizer, UniCodeVisualTokenizerConfig

torch.set_num_threads(2)

VOCAB = 128
HIDDEN = 32
SPECIAL_IDS = (0, 1, 2)


def tiny_llm(vocab_size: int = VOCAB, hidden_size: int = HIDDEN, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=1,
        num_attention_heads=2,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    return LlamaForCausalLM(config)


def tiny_tokenizer_config(quantizer: str = "rq", **overrides) -> UniCodeVisualTokenizerConfig:
    values = dict(
        image_size=16,
        latent_size=2,
        patch_size=2,
        block_out_channels=(16, 16, 16) if quantizer != "hq" else (16, 16),
        norm_num_groups=8,
        quantizer=quantizer,
        codes_per_position=4,
    )
    values.update(overrides)
    return UniCodeVisualTokenizerConfig(**values)


def tiny_tokenizer(quantizer: str = "rq", seed: int = 0, **overrides) -> UniCodeVisualTokenizer:
    llm = tiny_llm()
    torch.manual_seed(seed)
    return UniCodeVisualTokenizer.from_llm(llm, tiny_tokenizer_config(quantizer, **overrides))


@pytest.fixture
def llm():
    return tiny_llm()


@pytest.fixture
def pixels():
    torch.manual_seed(1)
    return torch.rand(3, 3, 16, 16) * 2 - 1


CORPUS = [
    "a red apple on a white table",
    "what is this picture? it is a smiling face",
    "draw a blue car and a green tree",
    "the cat sat on the mat with a yellow hat",
    "which group is this emoji in? animals and nature",
]


def tiny_text_tokenizer(vocab_size: int = VOCAB):
    """A real fast BPE tokenizer with `vocab_size` ids (<pad>, <s>, </s> = 0, 1, 2; ChatML's markers 4, 5), trained here in
    milliseconds on a few sentences, so the processor is tested on true tokenisation, offline."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Metaspace()
    alphabet = list("abcdefghijklmnopqrstuvwxyz?!.,'")
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "<s>", "</s>", "<unk>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=alphabet,
    )
    backend.train_from_iterator(CORPUS, trainer)
    assert backend.get_vocab_size() == vocab_size, backend.get_vocab_size()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


def tiny_gpt2(vocab_size: int = VOCAB, hidden_size: int = HIDDEN, seed: int = 0):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=vocab_size,
        n_embd=hidden_size,
        n_layer=1,
        n_head=2,
        n_positions=256,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    return GPT2LMHeadModel(config)


def tiny_unicode(architecture: str = "llama", quantizer: str = "rq", seed: int = 0, **overrides):
    """(model, processor): a tiny random LLM of the given architecture with a tiny visual tokenizer built from it."""
    from transformers_unicode import UniCodeForCausalLM

    llm = tiny_llm(seed=seed) if architecture == "llama" else tiny_gpt2(seed=seed)
    torch.manual_seed(seed)
    visual = UniCodeVisualTokenizer.from_llm(llm, tiny_tokenizer_config(quantizer, **overrides))
    return UniCodeForCausalLM.from_llm(llm, visual, tokenizer=tiny_text_tokenizer(), return_processor=True)


TINY_SFT_SCRIPT = dict(
    train_limit=16,
    num_samples=16,
    eval_limit=0,
    decompression_segments=2,
    mixture="caption=1,group=1,text_to_image=1,decompression=1",
)


def tiny_sft(output_dir, unicode=None, model_args=None, script=None, **kwargs):
    """A few Stage II steps of a tiny UniCode on OpenMoji through `run_sft`; returns (results, trainer).

    `unicode` is a (model, processor) pair (a fresh `tiny_unicode()` by default); keyword arguments that
    `run_sft` takes (callbacks, resume_from_checkpoint) go to it, the rest override the SFTConfig.
    """
    from trl import ModelConfig, SFTConfig

    from transformers_unicode.training.stage2 import SFTScriptArguments, run_sft

    run_kwargs = {k: kwargs.pop(k) for k in ("callbacks", "resume_from_checkpoint") if k in kwargs}
    config = dict(
        output_dir=str(output_dir),
        max_steps=4,
        per_device_train_batch_size=4,
        learning_rate=1e-3,
        use_cpu=True,
        bf16=False,
        report_to=[],
        logging_steps=1,
        save_strategy="no",
        max_length=None,
        disable_tqdm=True,
        activation_checkpointing=False,
        seed=0,
        data_seed=0,
    )
    config.update(kwargs)
    model, processor = unicode if unicode is not None else tiny_unicode()
    out = {}
    results = run_sft(
        SFTScriptArguments(**{**TINY_SFT_SCRIPT, **(script or {})}),
        SFTConfig(**config),
        model_args or ModelConfig(),
        model=model,
        processor=processor,
        trainer_out=out,
        **run_kwargs,
    )
    return results, out["trainer"]


class StopAt(TrainerCallback):
    """Simulates a crash: raises once training passes `step` (for the resume tests)."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt
