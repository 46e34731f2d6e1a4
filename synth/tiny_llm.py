"""A tiny random-initialised causal LM with its own byte-level BPE tokenizer, built offline.

Tests, benchmarks and the CPU pipeline need a real model for vLLM and for LoRA training, and no model can be
downloaded here. The tokenizer is trained on the given texts (byte-level, so any text encodes) and carries a chat
template; the model is a small Llama with random weights. Its output is noise, but with structured decoding it is
valid JSON, which is what the annotation path needs to exercise.
"""
from __future__ import annotations

from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
SPECIAL_TOKENS = ["<|end|>", "<|pad|>", "<|system|>", "<|user|>", "<|assistant|>"]


def build_tokenizer(texts: list[str], vocab_size: int = 1024):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|end|>", pad_token="<|pad|>",
                                   chat_template=CHAT_TEMPLATE)


def build_tiny_llm(directory: str | Path, texts: list[str], vocab_size: int = 1024, hidden_size: int = 128,
                   num_layers: int = 2, seed: int = 0, final_norm_gain: float = 1.0) -> Path:
    """Save a random Llama (hidden 128, 2 layers, head size 64: vLLM's CPU attention has no kernel for 16) and its tokenizer.

    At init (std 0.02) the logits stay within about +-2.5, so LoRA adapters on a frozen base cannot get below ~4.4
    nats; a final-norm gain of 8 gives a student that adapters can fit."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    directory = Path(directory)
    tokenizer = build_tokenizer(texts, vocab_size)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=4 * hidden_size,
        num_hidden_layers=num_layers, num_attention_heads=hidden_size // 64, num_key_value_heads=1, max_position_embeddings=8192,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
        tie_word_embeddings=True, torch_dtype="float32",
    )
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        model.model.norm.weight.fill_(final_norm_gain)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def main(argv: list[str] | None = None) -> None:
    """python -m synth.tiny_llm OUT [--gain 8]: a tiny LLM whose tokenizer learned the shipped NCBI-disease abstracts."""
    import argparse

    from gliner.evaluation.pubtator import read_pubtator

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("output")
    parser.add_argument("--texts", default="data/ncbi-disease-pubtator/train.pubtator", help="PubTator file the tokenizer learns from")
    parser.add_argument("--vocab-size", type=int, default=2048)
    parser.add_argument("--gain", type=float, default=1.0, help="final-norm gain (8 for a LoRA student)")
    args = parser.parse_args(argv)
    texts = [document.text for document in read_pubtator(args.texts)]
    print(build_tiny_llm(args.output, texts, vocab_size=args.vocab_size, final_norm_gain=args.gain))


if __name__ == "__main__":
    main()
