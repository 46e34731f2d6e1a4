"""The annotation prompt: a system message, few-shot user/assistant turns, then the passage, as chat messages."""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import yaml


@dataclass(frozen=True)
class FewShotExample:
    text: str
    answer: dict


@dataclass(frozen=True)
class AnnotationPrompt:
    system: str
    user_template: str  # holds "{text}"
    examples: tuple[FewShotExample, ...]

    def messages(self, text: str) -> list[dict]:
        messages = [{"role": "system", "content": self.system.strip()}]
        for example in self.examples:
            messages.append({"role": "user", "content": self.user_message(example.text)})
            messages.append({"role": "assistant", "content": json.dumps(example.answer, ensure_ascii=False, separators=(",", ":"))})
        messages.append({"role": "user", "content": self.user_message(text)})
        return messages

    def user_message(self, text: str) -> str:
        return self.user_template.replace("{text}", text).strip()


@functools.lru_cache(maxsize=2)
def load_chat_tokenizer(source: str):
    """The causal LM's tokenizer (a local directory or hub id), loaded once per process: Ray reuses worker processes."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(source)


def chat_prompt_token_ids(tokenizer, conversations: list[list[dict]]) -> list[list[int]]:
    """Token ids of chat prompts, built as vLLM's chat builds them: the template renders the special tokens (Llama 3's
    BOS among them), so the tokenizer must add none."""
    rendered = [tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) for messages in conversations]
    return tokenizer(rendered, add_special_tokens=False)["input_ids"]


def load_prompt(path: str | Path) -> AnnotationPrompt:
    """Read a prompt YAML (system, user_template, examples[text, answer]); errors name the file and the field."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a prompt file must hold a mapping")
    for field in ("system", "user_template"):
        if not isinstance(data.get(field), str) or not data[field].strip():
            raise ValueError(f"{path}: '{field}' must be a non-empty string")
    if "{text}" not in data["user_template"]:
        raise ValueError(f"{path}: 'user_template' must contain {{text}}")
    examples = tuple(_example(path, index, raw) for index, raw in enumerate(data.get("examples") or []))
    return AnnotationPrompt(data["system"], data["user_template"], examples)


def _example(path, index: int, raw) -> FewShotExample:
    if not isinstance(raw, dict) or not isinstance(raw.get("text"), str) or not isinstance(raw.get("answer"), dict):
        raise ValueError(f"{path}: examples[{index}] needs 'text' (string) and 'answer' (mapping)")
    answer = {"entities": raw["answer"].get("entities") or [], "relations": raw["answer"].get("relations") or []}
    known = {entity["id"] for entity in answer["entities"]}
    for entity in answer["entities"]:
        if entity["text"] not in raw["text"]:
            raise ValueError(f"{path}: examples[{index}] entity {entity['text']!r} is not in its text")
    for relation in answer["relations"]:
        if relation["head"] not in known or relation["tail"] not in known:
            raise ValueError(f"{path}: examples[{index}] relation {relation} refers to an unknown entity id")
    return FewShotExample(raw["text"], answer)
