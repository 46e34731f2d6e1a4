"""Prompt tokens for the annotate job: built as vLLM's chat builds them, and bounded before the engine without
tokenizing every document (template tokens + UTF-8 bytes + a seam margin), with an exact count near the limit."""
import pytest
from tokenizers import processors

from gliner.evaluation.pubtator import read_pubtator
from ray_jobs.annotate import SEAM_TOKENS, AnnotateConfig, _rejection, _template_tokens
from synth.prompts import chat_prompt_token_ids, load_prompt
from synth.tiny_llm import build_tokenizer

PROMPT_FILE = "configs/annotate/prompt_biomed.yaml"
ADVERSARIAL_TEXTS = [
    "a",
    "  leading and trailing spaces  ",
    "tabs\tand\nnew\n\nlines\r\n",
    "x" * 3000,
    "the " * 700,
    "Ünïcödé façade, naïve café: α-synuclein, β2-microglobulin, IL-1β, 5'-UTR, Ca²⁺, µg/mL.",
    "中文生物医学文本：乳腺癌和肺癌是常见的恶性肿瘤。" * 20,
    "🧬🦠💊🧪" * 100,
    "<|user|><|assistant|><|end|> special tokens written out in the text",
    "{\"entities\": [{\"id\": 0}]} JSON-looking text with \\ backslashes \\n",
    "\u200b\u200d\ufeff zero-width and byte-order marks \u0301\u0301",
]


@pytest.fixture(scope="module")
def ncbi_texts(data_dir):
    return [document.text for document in read_pubtator(data_dir / "ncbi-disease-pubtator/train.pubtator")]


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory, ncbi_texts):
    directory = tmp_path_factory.mktemp("tokenizer")
    build_tokenizer(ncbi_texts[:200], vocab_size=2048).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def prompt(pytestconfig):
    return load_prompt(pytestconfig.rootpath / PROMPT_FILE)


def config(tokenizer_dir, max_model_len: int, max_tokens: int = 400) -> AnnotateConfig:
    return AnnotateConfig.model_validate({"documents": "d", "output": "o", "model": str(tokenizer_dir), "max_input_chars": 100_000,
                                          "engine": {"max_model_len": max_model_len}, "sampling": {"max_tokens": max_tokens}})


def exact_tokens(tokenizer, prompt, text: str) -> int:
    return len(chat_prompt_token_ids(tokenizer, [prompt.messages(text)])[0])


def test_prompt_ids_are_the_chat_template_tokenized_with_one_bos(ncbi_texts, prompt):
    """A tokenizer that adds a BOS, with a template that writes one: the prompt must start with a single BOS."""
    tokenizer = build_tokenizer(ncbi_texts[:50], vocab_size=512)
    bos = "<|begin|>"
    tokenizer.add_special_tokens({"bos_token": bos})
    tokenizer.chat_template = "{{ bos_token }}" + tokenizer.chat_template
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", special_tokens=[(bos, tokenizer.convert_tokens_to_ids(bos))])
    messages = [prompt.messages(text) for text in ncbi_texts[:5]]
    assert tokenizer("x")["input_ids"][0] == tokenizer.bos_token_id  # the tokenizer would add one by itself

    token_ids = chat_prompt_token_ids(tokenizer, messages)

    for ids, conversation in zip(token_ids, messages):
        assert ids == tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
        assert ids[0] == tokenizer.bos_token_id and ids[1] != tokenizer.bos_token_id


def test_template_tokens_plus_bytes_bounds_every_prompt(tokenizer_dir, prompt, ncbi_texts):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    template_tokens = _template_tokens(prompt, config(tokenizer_dir, 8192))
    assert template_tokens == exact_tokens(tokenizer, prompt, "")
    slack = []
    for text in ncbi_texts[:300] + ADVERSARIAL_TEXTS:
        bound = template_tokens + len(text.encode("utf-8")) + SEAM_TOKENS
        exact = exact_tokens(tokenizer, prompt, text)
        assert exact <= bound, text[:60]
        slack.append(bound - exact)
    assert min(slack) < SEAM_TOKENS + 4  # tight for single-byte-per-token text ("x" * 3000), not vacuous


def test_only_documents_near_the_limit_are_counted_exactly_and_the_count_decides(tokenizer_dir, prompt):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    template_tokens = _template_tokens(prompt, config(tokenizer_dir, 8192))
    words = "the patients " * 400  # common words: many bytes per token, so the byte bound overshoots
    fits, overflows = exact_tokens(tokenizer, prompt, words), exact_tokens(tokenizer, prompt, "🧬" * 1200)
    limit = fits + 400 + 10  # room for `words` and the answer; the byte bound says it might not fit
    assert template_tokens + len(words.encode()) + SEAM_TOKENS > limit - 400 and overflows > limit - 400

    cfg = config(tokenizer_dir, limit)
    assert _rejection(words, prompt, cfg, template_tokens) is None
    assert _rejection("🧬" * 1200, prompt, cfg, template_tokens) == (
        f"prompt_too_long: {overflows} prompt tokens + max_tokens=400 > max_model_len={limit}")
    assert _rejection("Cisplatin nephrotoxicity.", prompt, cfg, template_tokens) is None
    # Without template tokens (the HTTP backend, whose model has no local tokenizer) nothing is tokenized.
    assert _rejection("🧬" * 1200, prompt, cfg, None) is None
    assert _rejection(" \n ", prompt, cfg, template_tokens) == "empty_document"
