"""`GLiNER`: loading, saving and entity prediction with the API upstream users know."""
from __future__ import annotations

import contextlib
import dataclasses
import numbers
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig

from .checkpoint import (
    CONFIG_FILE,
    LABELS_TOKENIZER_DIR,
    load_tokenizer,
    load_weights_strictly,
    read_state_dict,
    resolve_model_dir,
    write_weights,
)
from .config import GLiNERConfig
from .decoding import Span, above_threshold, find_candidates, greedy_select
from .inputs import (
    Window,
    Words,
    build_prompt,
    count_tokens_per_word,
    encode_labels_for_bi_encoder,
    encode_words,
    normalize_labels,
    plan_windows,
    split_words,
    to_device,
)
from .model import MODEL_INPUTS, SpanModel, build_model
from .model_path import resolve_packaged_model
from .precision import (
    AUTOCAST_DTYPES,
    DEFAULT_MIN_AGREEMENT,
    PRECISIONS,
    PrecisionRefused,
    entity_agreement,
    load_calibration,
    missing_cpu_kernels,
    reduced_copy,
)

LONG_TEXT_MODES = ("window", "truncate", "error")
LEGACY_EXTRA_TOKEN = "[FLERT]"  # upstream adds it first when it adds prompt tokens, shifting <<ENT>> by one


@dataclass(frozen=True)
class _Chunk:
    text_index: int
    window: Window


class GLiNER(nn.Module):
    def __init__(self, config: GLiNERConfig, model: SpanModel, tokenizer, labels_tokenizer=None):
        super().__init__()
        self.config = config
        self.model = model
        self.tokenizer = tokenizer
        self.labels_tokenizer = labels_tokenizer
        self.window_overlap = max(2 * config.max_width, 32)
        self._label_cache: dict[tuple, torch.Tensor] = {}  # bi-encoders: label vectors per label set
        # Inference precision (set_precision): GPU autocast dtype, and on a CPU the fp32 model behind a reduced copy.
        self.autocast_dtype: torch.dtype | None = None
        self.precision, self.precision_check = "fp32", None
        self._exact_model: tuple = ()
        self.eval()

    # ----------------------------------------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(
        cls,
        model_id: str | Path,
        *,
        revision: str | None = None,
        cache_dir: str | None = None,
        local_files_only: bool = False,
        token: str | None = None,
        map_location: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        max_length: int | None = None,
        max_width: int | None = None,
        attn_implementation: str | None = None,
        precision: str = "fp32",
    ) -> "GLiNER":
        """Load a checkpoint directory or hub id. Weights must match the model exactly (see docs/compatibility.md for the
        few keys that are deliberately skipped). attn_implementation: e.g. "sdpa" or "eager" for the backbone;
        precision: see `set_precision` (a reduced CPU mode checks itself with its defaults)."""
        model_dir = resolve_model_dir(model_id, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only, token=token)
        config = GLiNERConfig.from_json_file(model_dir / CONFIG_FILE)
        overrides = {"max_len": max_length, "max_width": max_width, "attn_implementation": attn_implementation}
        config = dataclasses.replace(config, **{k: v for k, v in overrides.items() if v is not None})
        has_tokenizer = (model_dir / "tokenizer_config.json").is_file()
        tokenizer = load_tokenizer(model_dir if has_tokenizer else config.model_name)
        labels_tokenizer = None
        if config.is_bi_encoder:
            labels_dir = model_dir / LABELS_TOKENIZER_DIR
            labels_tokenizer = load_tokenizer(labels_dir if (labels_dir / "tokenizer_config.json").is_file() else config.labels_encoder)
            model = build_model(config)
        else:
            needs_resize = _ensure_prompt_tokens(config, tokenizer)
            model = build_model(config)
            if needs_resize:
                _resize_embeddings(model, config, len(tokenizer))
        load_weights_strictly(model, read_state_dict(model_dir), config.is_bi_encoder)
        model.to(device=map_location, dtype=dtype)
        return cls(config, model, tokenizer, labels_tokenizer).set_precision(precision)

    @classmethod
    def from_backbone(
        cls,
        backbone: str,
        *,
        labels_encoder: str | None = None,
        hidden_size: int | None = None,
        max_width: int = 12,
        max_len: int = 384,
        span_mode: str = "markerV0",
        dropout: float = 0.4,
        **config_fields,
    ) -> "GLiNER":
        """A fresh model for training: pretrained backbone(s) (local dir, hub id or `package:<distribution>`, see
        model_path.py), random GLiNER layers."""
        backbone = resolve_packaged_model(str(backbone))
        labels_encoder = resolve_packaged_model(str(labels_encoder)) if labels_encoder else None
        text_config = AutoConfig.from_pretrained(backbone)
        config = GLiNERConfig(
            model_name=str(backbone),
            hidden_size=hidden_size or text_config.hidden_size,
            max_width=max_width,
            max_len=max_len,
            span_mode=span_mode,
            dropout=dropout,
            encoder_config=text_config.to_dict(),
            labels_encoder=str(labels_encoder) if labels_encoder else None,
            labels_encoder_config=AutoConfig.from_pretrained(labels_encoder).to_dict() if labels_encoder else None,
            num_rnn_layers=0 if labels_encoder else config_fields.pop("num_rnn_layers", 1),
            **config_fields,
        )
        tokenizer = load_tokenizer(backbone)
        labels_tokenizer = load_tokenizer(labels_encoder) if labels_encoder else None
        model = build_model(config, backbone_path=str(backbone), labels_backbone_path=str(labels_encoder) if labels_encoder else None)
        if not config.is_bi_encoder and _ensure_prompt_tokens(config, tokenizer):
            _resize_embeddings(model, config, len(tokenizer))
        return cls(config, model, tokenizer, labels_tokenizer)

    def save_pretrained(self, save_directory: str | Path) -> Path:
        """gliner_config.json, model.safetensors and tokenizer files, loadable here and by upstream `gliner`."""
        save_directory = Path(save_directory)
        save_directory.mkdir(parents=True, exist_ok=True)
        write_weights(self._exact_model[0] if self._exact_model else self.model, save_directory)  # fp32, whatever the precision
        # Bi-encoders never run an LSTM; saying so keeps upstream from creating an unused one.
        config = dataclasses.replace(self.config, num_rnn_layers=0) if self.config.is_bi_encoder else self.config
        config.to_json_file(save_directory / CONFIG_FILE)
        self.tokenizer.save_pretrained(str(save_directory))
        if self.labels_tokenizer is not None:
            self.labels_tokenizer.save_pretrained(str(save_directory / LABELS_TOKENIZER_DIR))
        return save_directory

    def set_precision(self, precision: str, *, calibration: tuple[list[str], list[str]] | None = None,
                      min_agreement: float = DEFAULT_MIN_AGREEMENT, threshold: float = 0.5, compile: bool = False) -> "GLiNER":
        """"fp32" (exact, the default), "bf16", "fp16" or "int8" for inference (docs/performance.md has their speed and
        agreement). On a GPU, bf16 and fp16 are autocast. On a CPU, bf16 and int8 run a reduced copy of the model
        (its label dot-products and logits fp32) and check themselves first (gliner/precision.py): `calibration`
        (texts, labels; default: shipped abstracts) is predicted at `threshold` both ways, and a mode whose entity
        agreement with fp32 is below `min_agreement`, or undefined (no entity either way), raises PrecisionRefused
        with the model left in fp32; min_agreement 0 accepts whatever it measures.
        `self.precision_check` keeps the measured agreement and whether it was accepted, refused modes included.
        `compile` (bf16): on a CPU the bf16 copy's text backbone is compiled for inference before the check (inductor
        freezing; 1.0-1.5x eager bf16 after 15-100 s of compiling), falling back to eager bf16 with a warning where
        it cannot compile; on a GPU, `self.compile()`."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
        if compile and precision != "bf16":
            raise ValueError(f"compile=True is for precision bf16, got {precision!r}")
        self._restore_exact_model()
        self.autocast_dtype, self.precision, self.precision_check = None, "fp32", None
        self._label_cache.clear()
        if precision == "fp32":
            return self
        if self.device.type != "cpu" or precision == "fp16":
            if precision == "int8":
                raise ValueError("precision int8 is a CPU mode; on a GPU use bf16 or fp16")
            self.autocast_dtype, self.precision = AUTOCAST_DTYPES[precision], precision
            return self.compile() if compile else self
        missing = missing_cpu_kernels(precision)
        if missing:
            warnings.warn(f"precision {precision} not applied, staying fp32: {missing}, so {precision} would be slower", stacklevel=2)
            return self
        self._switch_to_reduced(precision, calibration, min_agreement, threshold, compile)
        return self

    def _switch_to_reduced(self, precision: str, calibration, min_agreement: float, threshold: float, compile: bool) -> None:
        texts, labels = calibration if calibration is not None else load_calibration()
        exact = self.inference(texts, labels, threshold=threshold)
        exact_model = self.model
        reduced, compiled = self._reduced_predictions(exact_model, precision, compile, texts, labels, threshold)
        agreement = entity_agreement(precision, exact, reduced, threshold)
        accepted = min_agreement == 0 or (agreement.f1 is not None and agreement.f1 >= min_agreement)  # 0: measure only
        self.precision_check = {**agreement.to_dict(), "compiled": compiled, "min_agreement": min_agreement, "accepted": accepted}
        if not accepted:
            self.model = exact_model
            self._label_cache.clear()
            measured = "undefined: fp32 finds no entity in the calibration sample" if agreement.f1 is None else f"{agreement.f1:.4f}"
            raise PrecisionRefused(
                f"precision {precision} refused, the model stays fp32: its entities agree with fp32's at F1 {measured} "
                f"(min_agreement {min_agreement}) on {agreement.texts} calibration texts ({agreement.fp32_entities} fp32 "
                f"entities, {agreement.entities} in {precision}, {agreement.matching} identical)")
        self._exact_model = (exact_model,)  # a tuple: not a submodule, so state_dict() stays the model's
        self.precision = precision

    def _reduced_predictions(self, exact_model, precision: str, compile: bool, texts, labels, threshold: float) -> tuple[list, bool]:
        """Switch self.model to the reduced copy and predict the calibration texts with it (the first call compiles);
        (predictions, compiled). A copy that cannot compile (no C++ compiler, an unsupported backbone) runs eager."""
        self.model = reduced_copy(exact_model, precision, compile)
        self._label_cache.clear()
        try:
            return self.inference(texts, labels, threshold=threshold), compile
        except torch._dynamo.exc.BackendCompilerFailed as failure:
            reason = str(failure).splitlines()[0]
            warnings.warn(f"precision {precision}: the model could not be compiled, it runs eager: {reason}", stacklevel=3)
            return self._reduced_predictions(exact_model, precision, False, texts, labels, threshold)

    def _restore_exact_model(self) -> None:
        if self._exact_model:
            self.model = self._exact_model[0]
            self._exact_model = ()

    def compile(self, **options) -> "GLiNER":
        """torch.compile the backbone(s) (dynamic shapes); the module tree and checkpoint keys stay unchanged."""
        backbones = [self.model.backbone] + ([self.model.labels_backbone] if self.config.is_bi_encoder else [])
        for backbone in backbones:
            backbone.forward = torch.compile(backbone.forward, dynamic=True, **options)
        return self

    def train(self, mode: bool = True) -> "GLiNER":
        self._label_cache.clear()  # weights are about to change
        if mode and self._exact_model:
            self.set_precision("fp32")  # training updates the fp32 model, never a reduced copy
        return super().train(mode)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ----------------------------------------------------------------------------------------------- inference
    def predict_entities(self, text: str, labels: Sequence[str], threshold: float = 0.5, flat_ner: bool = True, multi_label: bool = False, long_text: str = "window") -> list[dict]:
        return self.inference([text], labels, threshold=threshold, flat_ner=flat_ner, multi_label=multi_label, long_text=long_text)[0]

    @torch.inference_mode()
    def inference(
        self,
        texts: Sequence[str] | str,
        labels: Sequence[str],
        threshold: float = 0.5,
        flat_ner: bool = True,
        multi_label: bool = False,
        batch_size: int = 8,
        long_text: str = "window",
    ) -> list[list[dict]]:
        """Entities per text as {"start", "end", "text", "label", "score"} with code-point offsets.

        long_text: "window" (default) splits texts longer than the word or token budget into overlapping windows
        and merges their entities; "truncate" cuts them as upstream does (with a warning); "error" raises.
        """
        return self.inference_at_thresholds(texts, labels, [threshold], flat_ner, multi_label, batch_size, long_text)[threshold]

    @torch.inference_mode()
    def inference_at_thresholds(
        self,
        texts: Sequence[str] | str,
        labels: Sequence[str],
        thresholds: Sequence[float],
        flat_ner: bool = True,
        multi_label: bool = False,
        batch_size: int = 8,
        long_text: str = "window",
    ) -> dict[float, list[list[dict]]]:
        """{threshold: entities per text} from one model pass; each is exactly what `inference` returns at that
        threshold (a threshold sweep costs one prediction)."""
        texts = _check_texts(texts)
        words_per_text = [split_words(text) for text in texts]
        spans_per_threshold = self._predict_words(words_per_text, labels, thresholds, flat_ner, multi_label, batch_size, long_text)
        return {
            threshold: [_to_entities(text, words, spans) for text, words, spans in zip(texts, words_per_text, spans_per_text)]
            for threshold, spans_per_text in spans_per_threshold.items()
        }

    @torch.inference_mode()
    def predict_word_spans(
        self,
        word_lists: Sequence[Sequence[str]],
        labels: Sequence[str],
        threshold: float = 0.5,
        flat_ner: bool = True,
        multi_label: bool = False,
        batch_size: int = 8,
        long_text: str = "window",
    ) -> list[list[Span]]:
        """Entities of pre-split texts (e.g. IOB sentences) as word spans (start, end inclusive, label, score)."""
        return self.predict_word_spans_at_thresholds(word_lists, labels, [threshold], flat_ner, multi_label, batch_size, long_text)[threshold]

    @torch.inference_mode()
    def predict_word_spans_at_thresholds(
        self,
        word_lists: Sequence[Sequence[str]],
        labels: Sequence[str],
        thresholds: Sequence[float],
        flat_ner: bool = True,
        multi_label: bool = False,
        batch_size: int = 8,
        long_text: str = "window",
    ) -> dict[float, list[list[Span]]]:
        """{threshold: word spans per text} from one model pass; each is exactly what `predict_word_spans` returns
        at that threshold."""
        words_per_text = []
        for index, words in enumerate(word_lists):
            if isinstance(words, str) or not all(isinstance(word, str) for word in words):
                raise ValueError(f"word list {index} must be a list of strings")
            words_per_text.append(Words(list(words), [0] * len(words), [0] * len(words)))
        return self._predict_words(words_per_text, labels, thresholds, flat_ner, multi_label, batch_size, long_text)

    def _predict_words(self, words_per_text: list[Words], labels, thresholds, flat_ner, multi_label, batch_size, long_text) -> dict[float, list[list[Span]]]:
        labels = normalize_labels(labels, reserved_tokens=(self.config.ent_token, self.config.sep_token))
        _check_options(thresholds, batch_size, long_text)
        chunks = self._plan_chunks(words_per_text, labels, long_text)
        spans_per_threshold = self._predict_chunks(chunks, words_per_text, labels, thresholds, flat_ner, multi_label, batch_size)
        return {
            threshold: _merge_chunks(chunks, spans_per_chunk, len(words_per_text), flat_ner, multi_label)
            for threshold, spans_per_chunk in spans_per_threshold.items()
        }

    def encode_labels(self, labels: Sequence[str]) -> torch.Tensor:
        """Bi-encoders only: (C, D) pooled label vectors, the tensor upstream's `encode_labels` returns."""
        if not self.config.is_bi_encoder:
            raise ValueError("encode_labels needs a bi-encoder model (one with a labels_encoder)")
        labels = normalize_labels(labels)
        encoded = encode_labels_for_bi_encoder(self.labels_tokenizer, labels)
        with torch.inference_mode():
            return self.model.encode_labels(encoded["input_ids"].to(self.device), encoded["attention_mask"].to(self.device))

    def _plan_chunks(self, words_per_text: list[Words], labels: list[str], long_text: str) -> list[_Chunk]:
        max_tokens = self._text_token_budget(labels)
        chunks = []
        for text_index, words in enumerate(words_per_text):
            if len(words) == 0:
                continue
            for window in self._windows_for(words, max_tokens, long_text, text_index):
                chunks.append(_Chunk(text_index, window))
        return chunks

    def _windows_for(self, words: Words, max_tokens: int | None, long_text: str, text_index: int) -> list[Window]:
        max_words = self.config.max_len
        if long_text == "truncate":
            if len(words) > max_words:
                warnings.warn(f"Sentence of length {len(words)} has been truncated to {max_words}", stacklevel=_caller_stacklevel())
            end = min(len(words), max_words)
            return [Window(0, end, 0, end)]
        counts = count_tokens_per_word(self.tokenizer, words.tokens)
        fits = len(words) <= max_words and (max_tokens is None or sum(counts) <= max_tokens)
        if fits:
            return [Window(0, len(words), 0, len(words))]
        if long_text == "error":
            raise ValueError(
                f"text {text_index} has {len(words)} words and {sum(counts)} subword tokens; the model takes at most "
                f"{max_words} words and {max_tokens} tokens with these labels (use long_text='window' to split it)"
            )
        return plan_windows(counts, max_words, max_tokens, self.window_overlap)

    def _text_token_budget(self, labels: list[str]) -> int | None:
        """Subword tokens left for text once special tokens and the label prompt are in the encoder window."""
        limit = self.tokenizer.model_max_length
        if limit is None or limit > 1_000_000:
            limit = getattr(self.model.backbone.config, "max_position_embeddings", None)
            if limit is None:
                return None
        prompt = self._prompt(labels)
        return limit - self.tokenizer.num_special_tokens_to_add(pair=False) - sum(count_tokens_per_word(self.tokenizer, prompt))

    def _prompt(self, labels: list[str]) -> list[str]:
        return [] if self.config.is_bi_encoder else build_prompt(labels, self.config.ent_token, self.config.sep_token)

    def _predict_chunks(self, chunks, words_per_text, labels, thresholds, flat_ner, multi_label, batch_size) -> dict[float, list[list[Span]]]:
        """{threshold: spans per chunk}. One model pass finds the candidates above the lowest threshold; each
        threshold then decodes those above it, which are exactly the candidates a pass at that threshold finds."""
        word_lists = [words_per_text[c.text_index].tokens[c.window.start : c.window.end] for c in chunks]
        label_inputs = self._label_inputs(labels)
        lowest = min(thresholds)
        # Similar lengths share a batch, so little compute goes to padding; results return in input order.
        order = sorted(range(len(chunks)), key=lambda index: -sum(len(word) for word in word_lists[index]))
        results: dict[float, list[list[Span]]] = {threshold: [[] for _ in chunks] for threshold in thresholds}
        for first in range(0, len(order), batch_size):
            batch_indices = order[first : first + batch_size]
            logits = self._logits([word_lists[i] for i in batch_indices], labels, label_inputs)
            for row, index in enumerate(batch_indices):
                candidates = find_candidates(logits[row], len(word_lists[index]), labels, lowest)
                for threshold in thresholds:
                    results[threshold][index] = greedy_select(above_threshold(candidates, threshold), flat_ner, multi_label)
        return results

    def _label_inputs(self, labels: list[str]) -> dict[str, torch.Tensor]:
        """Bi-encoders: the (C, D) label vectors, encoded once per label set, device and dtype; none for uni-encoders."""
        if not self.config.is_bi_encoder:
            return {}
        key = (tuple(labels), self.device, next(self.model.parameters()).dtype)
        if key not in self._label_cache:
            if len(self._label_cache) >= 16:
                self._label_cache.pop(next(iter(self._label_cache)))
            with torch.inference_mode(), self._autocast():
                self._label_cache[key] = self.encode_labels(labels)
        return {"labels_embeds": self._label_cache[key]}

    def _logits(self, word_lists: list[list[str]], labels: list[str], label_inputs: dict) -> torch.Tensor:
        """(B, W, K, C) fp32 logits of one batch of word lists."""
        inputs = encode_words(self.tokenizer, word_lists, self.config.max_width, self._prompt(labels))
        inputs = to_device({key: inputs[key] for key in MODEL_INPUTS}, self.device)
        with self._autocast():
            logits, _ = self.model(**inputs, **label_inputs)
        return logits.float()

    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)


# --------------------------------------------------------------------------------------------------- helpers
def _ensure_prompt_tokens(config: GLiNERConfig, tokenizer) -> bool:
    """Make the tokenizer know <<ENT>>/<<SEP>>; True when embeddings must grow (upstream's legacy path)."""
    if config.class_token_index == -1 or config.vocab_size == -1:
        tokenizer.add_tokens([LEGACY_EXTRA_TOKEN, config.ent_token, config.sep_token], special_tokens=True)
        config.class_token_index = tokenizer.convert_tokens_to_ids(config.ent_token)
        return True
    token_id = tokenizer.convert_tokens_to_ids(config.ent_token)
    if token_id != config.class_token_index:
        raise ValueError(f"tokenizer maps {config.ent_token!r} to {token_id}, but the config says class_token_index={config.class_token_index}")
    return False


def _resize_embeddings(model: SpanModel, config: GLiNERConfig, size: int) -> None:
    backbone = model.backbone
    if backbone.get_input_embeddings().num_embeddings != size:
        backbone.resize_token_embeddings(size)
    config.vocab_size = size
    config.encoder_config = {**(config.encoder_config or backbone.config.to_dict()), "vocab_size": size}


def _check_texts(texts) -> list[str]:
    if isinstance(texts, str):
        return [texts]
    if not isinstance(texts, Sequence):
        raise ValueError(f"texts must be a string or a list of strings, not {type(texts).__name__}")
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"text {index} is a {type(text).__name__}, not a string")
    return list(texts)


def _caller_stacklevel() -> int:
    """The stacklevel that makes a warning point at the first frame outside this package and torch's wrappers."""
    import inspect

    package_dir = str(Path(__file__).parent)
    frame, level = inspect.currentframe(), 1
    while frame is not None and (frame.f_code.co_filename.startswith(package_dir) or "torch/utils/_contextlib" in frame.f_code.co_filename):
        frame, level = frame.f_back, level + 1
    return level - 1


def _check_options(thresholds: Sequence[float], batch_size: int, long_text: str) -> None:
    if isinstance(thresholds, str) or not isinstance(thresholds, Sequence) or not thresholds:
        raise ValueError(f"thresholds must be a non-empty list of numbers, got {thresholds!r}")
    for threshold in thresholds:
        if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be a number in [0, 1], got {threshold!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if long_text not in LONG_TEXT_MODES:
        raise ValueError(f"long_text must be one of {LONG_TEXT_MODES}, got {long_text!r}")


def _merge_chunks(chunks: list[_Chunk], spans_per_chunk: list[list[Span]], num_texts: int, flat_ner: bool, multi_label: bool) -> list[list[Span]]:
    """Shift window spans to document words, keep those each window owns, re-resolve where windows were many."""
    merged: list[list[Span]] = [[] for _ in range(num_texts)]
    windows_per_text = [0] * num_texts
    for chunk, spans in zip(chunks, spans_per_chunk):
        windows_per_text[chunk.text_index] += 1
        offset = chunk.window.start
        for span in spans:
            start = span.start + offset
            if chunk.window.own_start <= start < chunk.window.own_end:
                merged[chunk.text_index].append(Span(start, span.end + offset, span.label, span.score))
    return [greedy_select(spans, flat_ner, multi_label) if count > 1 else spans for spans, count in zip(merged, windows_per_text)]


def _to_entities(text: str, words: Words, spans: list[Span]) -> list[dict]:
    entities = []
    for span in spans:
        start, end = words.starts[span.start], words.ends[span.end]
        entities.append({"start": start, "end": end, "text": text[start:end], "label": span.label, "score": span.score})
    return entities
