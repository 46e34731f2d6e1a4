"""`GLiNER`: loading, saving and entity prediction with the API upstream users know."""
from __future__ import annotations

import contextlib
import dataclasses
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig

from .checkpoint import (
    CONFIG_FILE,
    LABELS_TOKENIZER_DIR,
    ensure_prompt_tokens,
    load_tokenizer,
    load_weights_strictly,
    read_state_dict,
    resolve_model_dir,
    write_weights,
)
from .config import GLiNERConfig
from .decoding import Span, decode_batch
from .device_feed import on_device
from .label_sets import Labels, LabelSet, grouped, label_sets_per_text
from .inputs import Words, encode_labels_for_bi_encoder, encode_words, normalize_labels, split_words, to_device
from .merge import merge_windows, to_entities
from .model import MODEL_INPUTS, SpanModel, build_model
from .model_path import resolve_packaged_model
from .prepare import Prepared, Preparer, check_options
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

class GLiNER(nn.Module):
    def __init__(self, config: GLiNERConfig, model: SpanModel, tokenizer, labels_tokenizer=None):
        super().__init__()
        self.config = config
        self.model = model
        self.tokenizer = tokenizer
        self.labels_tokenizer = labels_tokenizer
        position_limit = getattr(model.backbone.config, "max_position_embeddings", None)
        self.preparer = Preparer(tokenizer, config, position_limit)  # the prepare stage: tokenizer and config, no weights
        self._label_cache: dict[tuple, torch.Tensor] = {}  # bi-encoders: label vectors per label set
        self._given_label_vectors: dict[str, torch.Tensor] = {}  # bi-encoders: vectors encoded elsewhere (use_label_vectors)
        # Inference precision (set_precision): GPU autocast dtype, and on a CPU the fp32 model behind a reduced copy.
        self.autocast_dtype: torch.dtype | None = None
        self.precision, self.precision_check = "fp32", None
        self._exact_model: tuple = ()
        self.onnx_forward = None  # an OnnxForward when the forward stage runs in ONNX Runtime (use_onnx)
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
        onnx_file: str | None = None,
    ) -> "GLiNER":
        """Load a checkpoint directory or hub id. Weights must match the model exactly (see docs/compatibility.md for the
        few keys that are deliberately skipped). attn_implementation: e.g. "sdpa" or "eager" for the backbone;
        precision: see `set_precision` (a reduced CPU mode checks itself with its defaults); onnx_file: a graph in
        the directory (gliner/onnx_export.py) to run the forward in, see `use_onnx`."""
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
            needs_resize = ensure_prompt_tokens(config, tokenizer)
            model = build_model(config)
            if needs_resize:
                _resize_embeddings(model, config, len(tokenizer))
        load_weights_strictly(model, read_state_dict(model_dir), config.is_bi_encoder)
        model.to(device=map_location, dtype=dtype)
        gliner = cls(config, model, tokenizer, labels_tokenizer).set_precision(precision)
        return gliner.use_onnx(model_dir / onnx_file) if onnx_file is not None else gliner

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
        if not config.is_bi_encoder and ensure_prompt_tokens(config, tokenizer):
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
        if precision != "fp32" and self.onnx_forward is not None:
            raise ValueError(f"precision {precision!r} is for the torch forward; this model runs an ONNX graph (use_onnx(None) first)")
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

    def use_onnx(self, onnx_path: str | Path | None, threads: int | None = None) -> "GLiNER":
        """Run the forward stage in ONNX Runtime on the CPU, from a graph exported from this model (gliner/onnx_export.py;
        `pip install .[onnx]`); prepare and decode stay. None: back to the torch forward."""
        if onnx_path is not None and self.precision != "fp32":
            raise ValueError(f"use_onnx needs the fp32 model (its graph sets its own precision), precision is {self.precision!r}")
        from .onnx_runtime import OnnxForward

        self.onnx_forward = None if onnx_path is None else OnnxForward(onnx_path, threads)
        self._label_cache.clear()
        return self

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
    def predict_entities(self, text: str, labels: Sequence[str] | Mapping[str, str], threshold: float = 0.5, flat_ner: bool = True, multi_label: bool = False, long_text: str = "window") -> list[dict]:
        return self.inference([text], labels, threshold=threshold, flat_ner=flat_ner, multi_label=multi_label, long_text=long_text)[0]

    @torch.inference_mode()
    def inference(
        self,
        texts: Sequence[str] | str,
        labels: Labels,
        threshold: float = 0.5,
        flat_ner: bool = True,
        multi_label: bool = False,
        batch_size: int = 8,
        long_text: str = "window",
    ) -> list[list[dict]]:
        """Entities per text as {"start", "end", "text", "label", "score"} with code-point offsets.

        labels: a list of labels; a mapping of each label to a description, which the model reads in its place (the
        entities carry the label); or one of those per text.

        long_text: "window" (default) splits texts longer than the word or token budget into overlapping windows
        and merges their entities; "truncate" cuts them as upstream does (with a warning); "error" raises.
        """
        return self.inference_at_thresholds(texts, labels, [threshold], flat_ner, multi_label, batch_size, long_text)[threshold]

    @torch.inference_mode()
    def inference_at_thresholds(
        self,
        texts: Sequence[str] | str,
        labels: Labels,
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
            threshold: [to_entities(text, words, spans) for text, words, spans in zip(texts, words_per_text, spans_per_text)]
            for threshold, spans_per_text in spans_per_threshold.items()
        }

    @torch.inference_mode()
    def predict_word_spans(
        self,
        word_lists: Sequence[Sequence[str]],
        labels: Labels,
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
        labels: Labels,
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

    def _predict_words(self, words_per_text: list[Words], labels: Labels, thresholds, flat_ner, multi_label, batch_size, long_text) -> dict[float, list[list[Span]]]:
        """Texts that share a label set (all of them, unless `labels` gives one per text) are predicted together."""
        check_options(thresholds, batch_size, long_text)
        label_sets = label_sets_per_text(labels, len(words_per_text))
        results: dict[float, list] = {threshold: [None] * len(words_per_text) for threshold in thresholds}
        for label_set, indices in grouped(label_sets).items():
            words = [words_per_text[index] for index in indices]
            for threshold, spans_per_text in self._predict_label_set(words, label_set, thresholds, flat_ner, multi_label, batch_size, long_text).items():
                for index, spans in zip(indices, spans_per_text):
                    results[threshold][index] = spans
        return results

    def _predict_label_set(self, words_per_text: list[Words], label_set: LabelSet, thresholds, flat_ner, multi_label, batch_size, long_text) -> dict[float, list[list[Span]]]:
        """The four stages: prepare (CPU), forward (the model's device), decode (there, one transfer per batch),
        merge (windows back to texts); the model reads the label set's prompts, the spans carry its names."""
        prepared = self.preparer.prepare(words_per_text, list(label_set.prompts), long_text, batch_size)
        spans_per_chunk = self._spans_per_chunk(prepared, thresholds, flat_ner, multi_label)
        return {
            threshold: [label_set.named(spans) for spans in merge_windows(prepared.chunks, spans, len(words_per_text), flat_ner, multi_label)]
            for threshold, spans in spans_per_chunk.items()
        }

    def _spans_per_chunk(self, prepared: Prepared, thresholds, flat_ner: bool, multi_label: bool) -> dict[float, list[list[Span]]]:
        """{threshold: spans per chunk}. One model pass finds the candidates above the lowest threshold; each
        threshold then decodes those above it, which are exactly the candidates a pass at that threshold finds."""
        results: dict[float, list[list[Span]]] = {threshold: [[] for _ in prepared.chunks] for threshold in thresholds}
        for batch, decoded in self.predict_batches(prepared.batches, prepared.labels, thresholds, flat_ner, multi_label):
            for threshold, spans_per_row in decoded.items():
                for chunk_index, spans in zip(batch.chunk_indices, spans_per_row):
                    results[threshold][chunk_index] = spans
        return results

    @torch.inference_mode()
    def predict_batches(self, batches, labels: list[str], thresholds, flat_ner: bool = True, multi_label: bool = False):
        """(batch, {threshold: spans per row}) for each prepared batch: the forward and decode stages, with the next
        batch's copy to the device overlapping this one's forward. `labels` as the batches were prepared with."""
        for batch, logits in self.forward_batches(batches, labels):
            yield batch, decode_batch(logits, batch.inputs["text_lengths"].tolist(), labels, list(thresholds), flat_ner, multi_label)

    @torch.inference_mode()
    def forward_batches(self, batches, labels: list[str]):
        """(batch, its (B, W, K, C) fp32 logits on the model's device) for each prepared batch."""
        label_inputs = self._label_inputs(labels)
        for batch, inputs in on_device(batches, self.device):
            yield batch, self.forward_inputs(inputs, label_inputs)

    def forward_inputs(self, inputs: dict[str, torch.Tensor], label_inputs: dict) -> torch.Tensor:
        """The forward stage of one batch already on the device: (B, W, K, C) fp32 logits."""
        if self.onnx_forward is not None:
            return self.onnx_forward(inputs, label_inputs, self.config.max_width)
        with self._autocast():
            logits, _ = self.model(**inputs, **label_inputs)
        return logits.float()

    def encode_labels(self, labels: Sequence[str]) -> torch.Tensor:
        """Bi-encoders only: (C, D) pooled label vectors, the tensor upstream's `encode_labels` returns."""
        if not self.config.is_bi_encoder:
            raise ValueError("encode_labels needs a bi-encoder model (one with a labels_encoder)")
        labels = normalize_labels(labels)
        encoded = encode_labels_for_bi_encoder(self.labels_tokenizer, labels)
        with torch.inference_mode():
            return self.model.encode_labels(encoded["input_ids"].to(self.device), encoded["attention_mask"].to(self.device))

    def use_label_vectors(self, vectors: Mapping[str, torch.Tensor]) -> "GLiNER":
        """Bi-encoders: {label: (D,) vector} encoded once elsewhere (encode_labels, gliner.label_vectors); a label set
        whose labels all have one is never encoded again."""
        if not self.config.is_bi_encoder:
            raise ValueError("use_label_vectors needs a bi-encoder model (one with a labels_encoder)")
        self._given_label_vectors = {label: vector.float().cpu() for label, vector in vectors.items()}
        self._label_cache.clear()
        return self

    def _label_inputs(self, labels: list[str]) -> dict[str, torch.Tensor]:
        """Bi-encoders: the (C, D) label vectors, encoded once per label set, device and dtype (or, for an ONNX graph, the
        labels' tokens); none for uni-encoders."""
        if not self.config.is_bi_encoder:
            return {}
        if self.onnx_forward is not None:  # the graph encodes the labels itself, from their tokens
            tokens = encode_labels_for_bi_encoder(self.labels_tokenizer, labels)
            return {"labels_input_ids": tokens["input_ids"], "labels_attention_mask": tokens["attention_mask"]}
        key = (tuple(labels), self.device, next(self.model.parameters()).dtype)
        if key not in self._label_cache:
            if len(self._label_cache) >= 16:
                self._label_cache.pop(next(iter(self._label_cache)))
            if all(label in self._given_label_vectors for label in labels):
                self._label_cache[key] = torch.stack([self._given_label_vectors[label] for label in labels]).to(self.device)
            else:
                with torch.inference_mode(), self._autocast():
                    self._label_cache[key] = self.encode_labels(labels)
        return {"labels_embeds": self._label_cache[key]}

    @torch.inference_mode()
    def logits(self, word_lists: list[list[str]], labels: list[str]) -> torch.Tensor:
        """(B, W, K, C) fp32 logits of word lists, as one batch in input order."""
        inputs = encode_words(self.tokenizer, word_lists, self.config.max_width, self.preparer.prompt(labels))
        return self.forward_inputs(to_device({key: inputs[key] for key in MODEL_INPUTS}, self.device), self._label_inputs(labels))

    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)


# --------------------------------------------------------------------------------------------------- helpers
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
