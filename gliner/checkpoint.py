"""Checkpoint files: locating a model directory, reading and writing weights strictly, tokenizers."""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoTokenizer

from .config import GLiNERConfig
from .model import our_key, upstream_key
from .model_path import HUB_ID

CONFIG_FILE = "gliner_config.json"
SAFETENSORS_FILE = "model.safetensors"
PICKLE_FILE = "pytorch_model.bin"
LABELS_TOKENIZER_DIR = "labels_tokenizer"
LEGACY_EXTRA_TOKEN = "[FLERT]"  # upstream adds it first when it adds prompt tokens, shifting <<ENT>> by one


def resolve_model_dir(model_id: str | Path, *, revision=None, cache_dir=None, local_files_only=False, token=None) -> Path:
    """A local directory as is; an `owner/name` hub id downloaded (or found in the cache)."""
    path = Path(model_id).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise FileNotFoundError(f"{model_id} is a file, not a model directory")
    if not HUB_ID.match(str(model_id)):
        raise FileNotFoundError(f"no model directory at {model_id}")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(str(model_id), revision=revision, cache_dir=cache_dir, local_files_only=local_files_only, token=token))
    except Exception as error:  # the hub client raises many types (offline, 404, auth); all mean "not found here"
        raise FileNotFoundError(f"{model_id} is not a local directory and could not be fetched from the hub: {error}") from error


def read_model_config(model_id: str | Path) -> GLiNERConfig:
    """A checkpoint's config alone: from its directory, or its one config file from the hub (no weights)."""
    path = Path(model_id).expanduser()
    if path.is_dir() or not HUB_ID.match(str(model_id)):
        return GLiNERConfig.from_json_file(resolve_model_dir(path) / CONFIG_FILE)
    from huggingface_hub import hf_hub_download

    try:
        return GLiNERConfig.from_json_file(hf_hub_download(str(model_id), CONFIG_FILE))
    except Exception as error:  # the hub client raises many types (offline, 404, auth); all mean "not found here"
        raise FileNotFoundError(f"{model_id} is not a local directory and its {CONFIG_FILE} could not be fetched from the hub: {error}") from error


def read_state_dict(model_dir: Path) -> dict[str, torch.Tensor]:
    """Weights from model.safetensors, else pytorch_model.bin through the weights-only unpickler."""
    safetensors_path, pickle_path = model_dir / SAFETENSORS_FILE, model_dir / PICKLE_FILE
    if safetensors_path.is_file():
        path, read = safetensors_path, lambda: load_file(str(safetensors_path))
    elif pickle_path.is_file():
        path, read = pickle_path, lambda: torch.load(pickle_path, map_location="cpu", weights_only=True)
    else:
        raise FileNotFoundError(f"no {SAFETENSORS_FILE} or {PICKLE_FILE} in {model_dir}")
    try:
        state_dict = read()
    except Exception as error:  # parsers raise many types (SafetensorError, UnpicklingError, IndexError, ...)
        raise ValueError(f"corrupt checkpoint file {path}: {type(error).__name__}: {error}") from error
    if not isinstance(state_dict, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state_dict.items()):
        raise ValueError(f"corrupt checkpoint file {path}: not a mapping of names to tensors")
    return state_dict


def is_ignorable_key(key: str, is_bi_encoder: bool) -> bool:
    """Keys a checkpoint may carry that this library deliberately does not load (docs/compatibility.md)."""
    if key.endswith(".position_ids") or key.endswith(".token_type_ids"):
        return True  # index buffers that transformers rebuilds
    return is_bi_encoder and key.startswith("rnn.")  # bi-encoders hold a trained LSTM they never run


def upstream_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's tensors under the names upstream checkpoints give them."""
    return {upstream_key(key): value for key, value in model.state_dict().items()}


def load_weights_strictly(model: nn.Module, state_dict: dict[str, torch.Tensor], is_bi_encoder: bool) -> None:
    """Load checkpoint tensors (upstream's names) into `model`; any missing, unexpected or misshapen tensor is an error."""
    expected = upstream_state_dict(model)
    state_dict = {key.replace("_orig_mod.", ""): value for key, value in state_dict.items()}
    missing = sorted(key for key in expected.keys() - state_dict.keys() if not is_ignorable_key(key, is_bi_encoder))
    unexpected = sorted(key for key in state_dict.keys() - expected.keys() if not is_ignorable_key(key, is_bi_encoder))
    if missing or unexpected:
        raise ValueError(f"checkpoint does not match the model: missing {_preview(missing)}, unexpected {_preview(unexpected)}")
    loadable = {key: value for key, value in state_dict.items() if key in expected}
    mismatched = [f"{key} {tuple(value.shape)} vs {tuple(expected[key].shape)}" for key, value in loadable.items() if value.shape != expected[key].shape]
    if mismatched:
        raise ValueError(f"checkpoint tensors have the wrong shape: {_preview(mismatched)}")
    model.load_state_dict({our_key(key): value for key, value in loadable.items()}, strict=False)


def write_weights(model: nn.Module, model_dir: Path) -> None:
    tensors = {key: value.detach().contiguous().cpu() for key, value in upstream_state_dict(model).items()}
    save_file(_untie(tensors), str(model_dir / SAFETENSORS_FILE), metadata={"format": "pt"})


def _untie(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses tensors that share memory; copy the later ones."""
    seen: set[int] = set()
    result = {}
    for key, value in tensors.items():
        pointer = value.data_ptr()
        result[key] = value.clone() if pointer in seen and value.numel() else value
        seen.add(pointer)
    return result


def load_tokenizer(source: str | Path):
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    if not tokenizer.is_fast:
        raise ValueError(f"the tokenizer at {source} is not a fast tokenizer; word alignment needs word_ids()")
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _preview(items: list[str], limit: int = 8) -> str:
    if not items:
        return "none"
    shown = ", ".join(items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


def ensure_prompt_tokens(config, tokenizer) -> bool:
    """Make the tokenizer know <<ENT>>/<<SEP>>; True when embeddings must grow (upstream's legacy path)."""
    if config.class_token_index == -1 or config.vocab_size == -1:
        tokenizer.add_tokens([LEGACY_EXTRA_TOKEN, config.ent_token, config.sep_token], special_tokens=True)
        config.class_token_index = tokenizer.convert_tokens_to_ids(config.ent_token)
        return True
    token_id = tokenizer.convert_tokens_to_ids(config.ent_token)
    if token_id != config.class_token_index:
        raise ValueError(f"tokenizer maps {config.ent_token!r} to {token_id}, but the config says class_token_index={config.class_token_index}")
    return False
