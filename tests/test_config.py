"""GLiNERConfig: reading and writing gliner_config.json, legacy keys, and validation."""
import json

import pytest

from gliner import GLiNERConfig

# A config as an old upstream version wrote it: legacy `has_rnn`, training keys persisted verbatim, a model_type
# this library does not use, and HF's private attention key.
LEGACY_FILE = {
    "model_name": "microsoft/deberta-v3-large",
    "name": "correct",
    "max_width": 12,
    "hidden_size": 768,
    "span_mode": "marker",
    "dropout": 0.2,
    "max_len": 384,
    "has_rnn": True,
    "fine_tune": True,
    "subtoken_pooling": "first",
    "lr_encoder": "1e-5",
    "lr_others": "5e-5",
    "num_steps": 30000,
    "shuffle_types": True,
    "random_drop": True,
    "size_sup": -1,
    "eval_every": 5000,
    "log_dir": "logs",
    "root_dir": "ablation_backbone",
    "train_data": "train.json",
    "prev_path": "none",
    "warmup_ratio": 3000,
    "fuse_layers": False,
    "post_fusion_schema": "",
    "labels_decoder": None,
    "comment": "naïve – ünïcode",
    "model_type": "gliner",
    "_attn_implementation": "eager",
}
UNKNOWN_KEYS = ("lr_encoder", "lr_others", "num_steps", "shuffle_types", "random_drop", "size_sup", "eval_every", "log_dir",
                "root_dir", "train_data", "prev_path", "warmup_ratio", "fuse_layers", "post_fusion_schema", "labels_decoder", "comment")


def write_json(path, value) -> None:
    path.write_text(json.dumps(value), encoding="utf-8")


# ------------------------------------------------------------------------------------------------ defaults
def test_defaults_match_upstream():
    config = GLiNERConfig()
    assert config.model_name == "microsoft/deberta-v3-small"
    assert (config.span_mode, config.max_width, config.hidden_size, config.max_len) == ("markerV0", 12, 512, 384)
    assert (config.class_token_index, config.vocab_size) == (-1, -1)
    assert (config.ent_token, config.sep_token) == ("<<ENT>>", "<<SEP>>")
    assert config.num_rnn_layers == 1
    assert config.embed_ent_token is True
    assert config.extra == {}
    assert config.is_bi_encoder is False
    assert config.model_type == "gliner_uni_encoder_span"


def test_labels_encoder_makes_a_bi_encoder():
    config = GLiNERConfig(labels_encoder="BAAI/bge-small-en-v1.5")
    assert config.is_bi_encoder is True
    assert config.model_type == "gliner_bi_encoder_span"
    assert config.to_dict()["model_type"] == "gliner_bi_encoder_span"


# ------------------------------------------------------------------------------------------------ from_dict / to_dict
def test_from_dict_reads_known_keys_and_keeps_unknown_ones_in_extra():
    config = GLiNERConfig.from_dict(LEGACY_FILE)
    assert config.model_name == "microsoft/deberta-v3-large"
    assert config.name == "correct"
    assert config.span_mode == "marker"
    assert config.hidden_size == 768
    assert config.dropout == 0.2
    assert config.attn_implementation == "eager"
    assert set(config.extra) == set(UNKNOWN_KEYS)
    for key in UNKNOWN_KEYS:
        assert config.extra[key] == LEGACY_FILE[key]
    # Reading pops nothing from the caller's dict.
    assert LEGACY_FILE["model_type"] == "gliner" and LEGACY_FILE["has_rnn"] is True


def test_model_type_is_ignored_on_read_and_derived_on_write():
    uni = GLiNERConfig.from_dict({"model_type": "gliner_bi_encoder_span"})
    assert uni.is_bi_encoder is False
    assert "model_type" not in uni.extra
    assert uni.to_dict()["model_type"] == "gliner_uni_encoder_span"
    bi = GLiNERConfig.from_dict({"model_type": "gliner_uni_encoder_span", "labels_encoder": "some/encoder"})
    assert bi.to_dict()["model_type"] == "gliner_bi_encoder_span"


def test_attn_implementation_is_written_under_upstreams_private_key():
    config = GLiNERConfig.from_dict({"_attn_implementation": "sdpa"})
    assert config.attn_implementation == "sdpa"
    values = config.to_dict()
    assert values["_attn_implementation"] == "sdpa"
    assert "attn_implementation" not in values
    assert "extra" not in values
    assert GLiNERConfig.from_dict({}).to_dict()["_attn_implementation"] is None


def test_to_dict_writes_extra_keys_at_top_level_sorted():
    config = GLiNERConfig.from_dict(LEGACY_FILE)
    values = config.to_dict()
    for key in UNKNOWN_KEYS:
        assert values[key] == LEGACY_FILE[key]
    assert list(values) == sorted(values)
    assert values["num_rnn_layers"] == 1
    assert "has_rnn" not in values
    assert values["model_type"] == "gliner_uni_encoder_span"


def test_dict_round_trip_is_lossless():
    config = GLiNERConfig.from_dict(LEGACY_FILE)
    again = GLiNERConfig.from_dict(config.to_dict())
    assert again == config
    assert again.to_dict() == config.to_dict()


def test_json_file_round_trip(tmp_path):
    source = tmp_path / "in" / "gliner_config.json"
    source.parent.mkdir()
    write_json(source, LEGACY_FILE)
    config = GLiNERConfig.from_json_file(source)
    target = tmp_path / "gliner_config.json"
    config.to_json_file(target)
    text = target.read_text(encoding="utf-8")
    assert "naïve – ünïcode" in text  # written as UTF-8, not \u escapes
    written = json.loads(text)
    for key in UNKNOWN_KEYS:
        assert written[key] == LEGACY_FILE[key]
    assert written["model_type"] == "gliner_uni_encoder_span"
    assert written["_attn_implementation"] == "eager"
    assert written["num_rnn_layers"] == 1 and "has_rnn" not in written
    assert written["span_mode"] == "marker" and written["hidden_size"] == 768
    assert GLiNERConfig.from_json_file(target) == config


def test_json_file_round_trip_keeps_embedded_encoder_configs(tmp_path):
    encoder_config = {"model_type": "bert", "hidden_size": 32, "vocab_size": 30525, "num_hidden_layers": 2}
    config = GLiNERConfig(encoder_config=encoder_config, labels_encoder="x/y", labels_encoder_config={"model_type": "bert"},
                          class_token_index=30523, vocab_size=30525)
    path = tmp_path / "gliner_config.json"
    config.to_json_file(path)
    again = GLiNERConfig.from_json_file(path)
    assert again.encoder_config == encoder_config
    assert again.labels_encoder_config == {"model_type": "bert"}
    assert (again.class_token_index, again.vocab_size) == (30523, 30525)
    assert again == config


# ------------------------------------------------------------------------------------------------ legacy has_rnn
@pytest.mark.parametrize(("has_rnn", "expected"), [(False, 0), (True, 1)])
def test_legacy_has_rnn(has_rnn, expected):
    config = GLiNERConfig.from_dict({"has_rnn": has_rnn})
    assert config.num_rnn_layers == expected
    assert "has_rnn" not in config.extra
    assert config.to_dict()["num_rnn_layers"] == expected


@pytest.mark.parametrize("has_rnn", [False, True])
def test_explicit_num_rnn_layers_wins_over_has_rnn(has_rnn):
    assert GLiNERConfig.from_dict({"has_rnn": has_rnn, "num_rnn_layers": 2}).num_rnn_layers == 2
    assert GLiNERConfig.from_dict({"has_rnn": has_rnn, "num_rnn_layers": 0}).num_rnn_layers == 0


def test_no_rnn_key_means_one_layer():
    assert GLiNERConfig.from_dict({}).num_rnn_layers == 1


# ------------------------------------------------------------------------------------------------ validation
@pytest.mark.parametrize(
    ("values", "field_name"),
    [
        ({"span_mode": "token_level"}, "span_mode"),
        ({"span_mode": "markerv0"}, "span_mode"),
        ({"max_width": 0}, "max_width"),
        ({"max_width": -3}, "max_width"),
        ({"max_width": 2.5}, "max_width"),
        ({"hidden_size": 0}, "hidden_size"),
        ({"max_len": 0}, "max_len"),
        ({"num_rnn_layers": -1}, "num_rnn_layers"),
        ({"subtoken_pooling": "mean"}, "subtoken_pooling"),
        ({"words_splitter_type": "spacy"}, "words_splitter_type"),
        ({"labels_decoder": "openai-community/gpt2"}, "labels_decoder"),
        ({"post_fusion_schema": "l2l-l2t-t2t"}, "post_fusion_schema"),
        ({"fuse_layers": True}, "fuse_layers"),
        ({"relations_layer": "biaffine"}, "relations_layer"),
        ({"precomputed_prompts_mode": "mean"}, "precomputed_prompts_mode"),
        ({"span_encoder_config": {"model_type": "bert"}}, "span_encoder_config"),
    ],
)
def test_invalid_values_are_value_errors_naming_the_field(values, field_name):
    with pytest.raises(ValueError, match=field_name):
        GLiNERConfig.from_dict(values)


def test_validation_also_runs_on_direct_construction():
    with pytest.raises(ValueError, match="span_mode"):
        GLiNERConfig(span_mode="token_level")
    with pytest.raises(ValueError, match="max_width"):
        GLiNERConfig(max_width=0)


@pytest.mark.parametrize(
    "values",
    [
        {"span_mode": "marker"},
        {"labels_decoder": None, "post_fusion_schema": "", "fuse_layers": False, "relations_layer": None},
        {"max_width": 1, "num_rnn_layers": 0},
    ],
)
def test_harmless_values_are_accepted(values):
    config = GLiNERConfig.from_dict(values)
    for key, value in values.items():
        assert config.to_dict()[key] == value


def test_invalid_file_value_is_a_value_error(tmp_path):
    path = tmp_path / "gliner_config.json"
    write_json(path, {**LEGACY_FILE, "post_fusion_schema": "l2l-l2t"})
    with pytest.raises(ValueError, match="post_fusion_schema"):
        GLiNERConfig.from_json_file(path)


# ------------------------------------------------------------------------------------------------ bad files
@pytest.mark.parametrize(
    "content",
    [b'{"max_width": 12,', b"", b"not json", b"\xff\xfe\x00garbage"],
    ids=["truncated", "empty", "text", "not-utf8"],
)
def test_corrupt_json_is_a_value_error(tmp_path, content):
    path = tmp_path / "gliner_config.json"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="corrupt"):
        GLiNERConfig.from_json_file(path)


@pytest.mark.parametrize("value", [[1, 2], "a string", 12, None], ids=["list", "string", "number", "null"])
def test_non_object_json_is_a_value_error(tmp_path, value):
    path = tmp_path / "gliner_config.json"
    write_json(path, value)
    with pytest.raises(ValueError, match="JSON object"):
        GLiNERConfig.from_json_file(path)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        GLiNERConfig.from_json_file(tmp_path / "gliner_config.json")


def test_directory_instead_of_file_is_file_not_found(tmp_path):
    (tmp_path / "gliner_config.json").mkdir()
    with pytest.raises(FileNotFoundError):
        GLiNERConfig.from_json_file(tmp_path / "gliner_config.json")


@pytest.mark.parametrize("value", ["1", None, 1.5], ids=["string", "null", "float"])
def test_non_integer_num_rnn_layers_is_a_value_error(value):
    # validate() checks `num_rnn_layers < 0` without an isinstance check, so "1"/None raise TypeError instead.
    with pytest.raises(ValueError, match="num_rnn_layers"):
        GLiNERConfig.from_dict({"num_rnn_layers": value})
