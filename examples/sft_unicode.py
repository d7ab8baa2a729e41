"""Stage II: instruction-tune a UniCode model with TRL's SFTTrainer (full or LoRA).

One machine, one process (CPU or one GPU):

    python examples/sft_unicode.py --config examples/sft_openmoji.yaml

Several GPUs, data parallel / FSDP / DeepSpeed ZeRO-2 / ZeRO-3 (set num_processes in the config file):

    accelerate launch --config_file examples/accelerate/ddp.yaml   examples/sft_unicode.py --config examples/sft_openmoji.yaml
    accelerate launch --config_file examples/accelerate/fsdp.yaml  examples/sft_unicode.py --config examples/sft_openmoji.yaml
    accelerate launch --config_file examples/accelerate/zero2.yaml examples/sft_unicode.py --config examples/sft_openmoji.yaml
    accelerate launch --config_file examples/accelerate/zero3.yaml examples/sft_unicode.py --config examples/sft_openmoji.yaml

Several machines (run on each, with its own rank):

    accelerate launch --config_file examples/accelerate/multi_node.yaml --machine_rank $RANK \\
        examples/sft_unicode.py --config examples/sft_openmoji.yaml

Two gloo processes on a CPU machine (what the tests do):

    accelerate launch --config_file examples/accelerate/cpu_2proc.yaml examples/sft_unicode.py \\
        --config examples/sft_openmoji.yaml --use_cpu true

Your own data: `--dataset llava.json --image_folder images/` (LLaVA conversation JSON, e.g. LCS-558K or
mix665k) and/or `--text_to_image pairs/` (images + metadata.jsonl with file_name and caption), with
`--model_name_or_path` a UniCode folder or a Stage I tokenizer folder. Every flag: `--help`.
"""

import json

import torch
from trl import ModelConfig, SFTConfig, TrlParser

from transformers_unicode.training.stage2 import SFTScriptArguments, run_sft


def main():
    parser = TrlParser((SFTScriptArguments, SFTConfig, ModelConfig))
    if not torch.cuda.is_available():  # SFTConfig defaults to bf16 on an accelerator
        parser.set_defaults(use_cpu=True, bf16=False)
    script_args, training_args, model_args = parser.parse_args_and_config()[:3]
    results = run_sft(script_args, training_args, model_args)
    if training_args.process_index == 0:
        print(json.dumps({k: v for k, v in results.items() if k != "arguments"}, indent=2))


if __name__ == "__main__":
    main()
