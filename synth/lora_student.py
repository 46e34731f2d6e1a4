"""The distilled annotator: a causal LM with LoRA adapters, trained by the distill job, saved as a peft adapter and
as a merged model vLLM loads like any other."""
from __future__ import annotations

from pathlib import Path

import torch

TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def lora_model(model_config, lora_config, precision: str, seed: int) -> torch.nn.Module:
    """The frozen base in the run's precision (bf16 halves its memory), with fresh LoRA adapters in fp32 (peft's
    autocast_adapter_dtype), the same on every rank."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_config.base, dtype=TORCH_DTYPES[precision],
                                                 attn_implementation=model_config.attn_implementation)
    model.config.use_cache = False
    if model_config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    torch.manual_seed(seed)
    adapters = LoraConfig(r=lora_config.r, lora_alpha=lora_config.alpha, lora_dropout=lora_config.dropout,
                          target_modules=list(lora_config.target_modules), bias=lora_config.bias, task_type="CAUSAL_LM")
    return get_peft_model(model, adapters, autocast_adapter_dtype=True)


def save_adapter(model, tokenizer, directory: Path) -> None:
    """peft's adapter files (adapter_config.json, adapter_model.safetensors) and the tokenizer."""
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)


def merge_adapter(base: str, adapter_dir: Path, merged_dir: Path, dtype: torch.dtype, tokenizer) -> Path:
    """The base reloaded on the host with the adapter merged in (independent of the GPU the trainer held), saved as
    safetensors with the tokenizer, for vLLM."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype)
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    merged.config.use_cache = True
    merged.save_pretrained(merged_dir)
    tokenizer.save_pretrained(merged_dir)
    return merged_dir
