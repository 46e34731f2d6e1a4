"""`GLiNERConfig`: the model configuration, read from and written to `gliner_config.json` as upstream does."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SUPPORTED_SPAN_MODES = ("markerV0", "marker")

# Keys that only describe how a model was trained, or upstream features this library does not implement but
# that are harmless at their default values. They are kept verbatim so a round trip loses nothing.
_UNSUPPORTED_IF_SET = {
    "labels_decoder": None,
    "relations_layer": None,
    "post_fusion_schema": "",
    "fuse_layers": False,
    "precomputed_prompts_mode": None,
    "span_encoder_config": None,
}


@dataclass
class GLiNERConfig:
    model_name: str = "microsoft/deberta-v3-small"
    name: str = "gliner"
    span_mode: str = "markerV0"
    max_width: int = 12
    hidden_size: int = 512
    dropout: float = 0.4
    max_len: int = 384
    max_types: int = 25
    max_neg_type_ratio: int = 1
    words_splitter_type: str = "whitespace"
    subtoken_pooling: str = "first"
    num_rnn_layers: int = 1
    embed_ent_token: bool = True
    class_token_index: int = -1
    vocab_size: int = -1
    ent_token: str = "<<ENT>>"
    sep_token: str = "<<SEP>>"
    fine_tune: bool = True
    encoder_config: dict | None = None
    labels_encoder: str | None = None
    labels_encoder_config: dict | None = None
    attn_implementation: str | None = None
    # Every other key of the file (training settings persisted by upstream, unused features at their defaults).
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    @property
    def is_bi_encoder(self) -> bool:
        return self.labels_encoder is not None

    @property
    def model_type(self) -> str:
        return "gliner_bi_encoder_span" if self.is_bi_encoder else "gliner_uni_encoder_span"

    def validate(self) -> None:
        if self.span_mode not in SUPPORTED_SPAN_MODES:
            raise ValueError(f"span_mode {self.span_mode!r} is not supported; expected one of {SUPPORTED_SPAN_MODES}")
        for name in ("max_width", "hidden_size", "max_len"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.num_rnn_layers, int) or isinstance(self.num_rnn_layers, bool) or self.num_rnn_layers < 0:
            raise ValueError(f"num_rnn_layers must be a non-negative integer, got {self.num_rnn_layers!r}")
        if self.subtoken_pooling != "first":
            raise ValueError(f"subtoken_pooling {self.subtoken_pooling!r} is not supported; only 'first' is")
        if self.words_splitter_type != "whitespace":
            raise ValueError(f"words_splitter_type {self.words_splitter_type!r} is not supported; only 'whitespace' is")
        for key, default in _UNSUPPORTED_IF_SET.items():
            if self.extra.get(key, default) not in (default, None, "", False):
                raise ValueError(f"config key {key}={self.extra[key]!r} selects an upstream feature this library does not implement")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "GLiNERConfig":
        values = dict(values)
        values.pop("model_type", None)
        values.pop("transformers_version", None)
        # Legacy (<= 0.2.22) checkpoints say `has_rnn` instead of `num_rnn_layers`.
        has_rnn = values.pop("has_rnn", None)
        if "num_rnn_layers" not in values and has_rnn is not None:
            values["num_rnn_layers"] = 1 if has_rnn else 0
        if "_attn_implementation" in values:
            values["attn_implementation"] = values.pop("_attn_implementation")
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        extra = {key: values.pop(key) for key in list(values) if key not in known}
        return cls(**values, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("extra", "attn_implementation")}
        values["_attn_implementation"] = self.attn_implementation
        values.update(self.extra)
        values["model_type"] = self.model_type
        return dict(sorted(values.items()))

    @classmethod
    def from_json_file(cls, path: str | Path) -> "GLiNERConfig":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no gliner_config.json at {path}")
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"corrupt config file {path}: {error}") from error
        if not isinstance(values, dict):
            raise ValueError(f"corrupt config file {path}: expected a JSON object")
        return cls.from_dict(values)

    def to_json_file(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
