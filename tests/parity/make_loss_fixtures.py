"""Record upstream GLiNER's training loss on fixed batches, for tests/test_loss_parity.py.

Run by hand, in the venv with the upstream library (`make upstream-venv`):

    .venv-upstream/bin/python tests/parity/make_loss_fixtures.py

For each parity checkpoint (tests/fixtures/parity/{uni,bi,deberta}, rebuilt with `assemble_checkpoint`) this loads
upstream `GLiNER`, switches it to eval() (no dropout), collates a few batches of real BC5CDR / NCBI-disease
sentences with upstream's own data collator and records the loss upstream's span model returns for several loss
settings, as Trainer.compute_loss passes them (alpha, gamma, prob_margin, label_smoothing, reduction).

Label sets are fixed so that upstream's random negative-type sampling never runs:
* uni-encoders: every example carries "ner_labels" (upstream then uses exactly that list, in that order);
* bi-encoders: the shared label set is given to the collator as explicit `class_to_ids` (upstream's own
  BiEncoderSpanProcessor.batch_generate_class_mappings shuffles and then passes the list through set(), so its
  order would depend on PYTHONHASHSEED; it also ignores "ner_labels", reading a "ner_label" key instead).
The label order upstream ended up with is read back from the batch's `id_to_classes` and recorded.

Upstream quirk (gliner 0.2.29): BiEncoderSpanModel.loss calls
    self._loss(scores, labels, alpha, gamma, label_smoothing, negatives=..., masking=...)
whose fourth positional parameter is `prob_margin`: a bi-encoder's label_smoothing is applied as a probability
margin, with no smoothing, and its `prob_margin` argument is swallowed by **kwargs and ignored. For bi-encoder
cases we record both what upstream really returns ("loss") and the loss its uni-encoder code computes on the very
same logits ("intended_loss", UniEncoderSpanModel.loss, which forwards every option by keyword), plus the options
our span_loss needs to reproduce the quirk ("quirk_options").
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import warnings
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
warnings.filterwarnings("ignore")

import gliner  # noqa: E402  (upstream)
import torch  # noqa: E402
from gliner.modeling.base import UniEncoderSpanModel  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from assemble import FIXTURES, assemble_checkpoint  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "data" / "bioner-iob"
OUT = FIXTURES / "upstream_losses.json"

SETTINGS = {
    "bce_sum": {},
    "focal": {"alpha": 0.75, "gamma": 2.0},
    "label_smoothing": {"label_smoothing": 0.1},
    "mean": {"reduction": "mean"},
    "prob_margin": {"prob_margin": 0.1},
    "combined": {"alpha": 0.75, "gamma": 2.0, "prob_margin": 0.1, "label_smoothing": 0.1, "reduction": "mean"},
}


def read_iob(path: Path) -> list[tuple[list[str], list[list]]]:
    """Sentences of a two-column IOB file as (words, [[start, end inclusive, lower-cased type], ...])."""
    sentences, words, tags = [], [], []
    for line in path.read_text(encoding="utf-8").splitlines() + [""]:
        if not line.strip():
            if words:
                sentences.append((words, iob_spans(tags)))
            words, tags = [], []
            continue
        word, tag = line.split("\t")
        words.append(word)
        tags.append(tag)
    return sentences


def iob_spans(tags: list[str]) -> list[list]:
    spans, start, label = [], None, None
    for position, tag in enumerate(tags + ["O"]):
        continues = tag.startswith("I-") and start is not None and tag[2:] == label
        if not continues:
            if start is not None:
                spans.append([start, position - 1, label.lower()])
                start = None
            if tag != "O":
                start, label = position, tag[2:]
    return spans


def example(sentences, index: int, labels: list[str] | None = None) -> dict:
    words, spans = sentences[index]
    raw = {"tokenized_text": list(words), "ner": [list(span) for span in spans]}
    if labels is not None:
        raw["ner_labels"] = list(labels)
    return raw


def make_batches() -> dict[str, list[dict]]:
    """Batches named by purpose. Sentence indices are into train.tsv (blank-line separated)."""
    cdr = read_iob(DATA / "BC5CDR" / "train.tsv")
    ncbi = read_iob(DATA / "NCBI-disease" / "train.tsv")
    return {
        # chemical + disease with a 4-word span; a 7-word disease span; no entities; 66 words (truncated, with
        # entities at words 40-43: kept at max_len 48, dropped at max_len 40).
        "mixed": [
            example(cdr, 0, ["chemical", "disease", "gene"]),
            example(ncbi, 1, ["disease", "gene"]),
            example(cdr, 3, ["gene", "chemical", "disease"]),
            example(cdr, 20, ["disease", "chemical"]),
        ],
        # an 8-word span among others; 58 words with a span at 39-42 (cut at max_len 40); a type seen in no text.
        "second": [
            example(ncbi, 34, ["disease", "protein", "chemical", "gene"]),
            example(cdr, 57, ["chemical", "disease"]),
            example(ncbi, 49, ["gene", "disease", "chemical"]),
        ],
        # spans cut by truncation: NCBI 59 words with spans at 37-41 (straddles 40), 43-45, 48-53 (past 48);
        # BC5CDR 53 words with a span at 47-48 (straddles 48).
        "truncation": [
            example(ncbi, 932, ["disease", "chemical"]),
            example(cdr, 654, ["chemical", "gene", "disease"]),
        ],
        # an example with an empty label set and no entities: upstream gives it the placeholder type "".
        "placeholder": [
            example(cdr, 12, []),
            example(cdr, 7, ["disease", "chemical"]),
        ],
    }


BI_LABEL_SETS = {
    "mixed": ["disease", "gene", "chemical"],
    "second": ["gene", "chemical", "protein", "disease"],
    "truncation": ["chemical", "disease"],
}


def collate(model, examples: list[dict], shared_labels: list[str] | None):
    collator = model._create_data_collator(return_id_to_classes=True)
    if shared_labels is None:
        batch = collator(examples)
    else:
        class_to_id = {label: position for position, label in enumerate(shared_labels, start=1)}
        id_to_class = {position: label for label, position in class_to_id.items()}
        batch = collator(examples, class_to_ids=[class_to_id] * len(examples), id_to_classes=[id_to_class] * len(examples))
    id_to_classes = batch.pop("id_to_classes")
    label_sets = [[mapping[key] for key in sorted(mapping)] for mapping in id_to_classes]
    return batch, label_sets


def record_model(name: str, work_dir: Path) -> dict:
    directory = assemble_checkpoint(name, work_dir / name)
    model = gliner.GLiNER.from_pretrained(str(directory), local_files_only=True)
    model.eval()
    is_bi = bool(model.config.labels_encoder)
    record = {"max_len": model.config.max_len, "max_width": model.config.max_width, "bi_encoder": is_bi, "batches": []}
    for batch_name, examples in make_batches().items():
        if is_bi:
            if batch_name not in BI_LABEL_SETS:
                continue
            examples = [{k: v for k, v in raw.items() if k != "ner_labels"} for raw in examples]
        batch, label_sets = collate(model, examples, BI_LABEL_SETS.get(batch_name) if is_bi else None)
        if is_bi:
            assert all(row == label_sets[0] for row in label_sets)
        cases = []
        with torch.no_grad():
            for setting, options in SETTINGS.items():
                output = model.model(**batch, **options)
                case = {"setting": setting, "options": options, "loss": repr(float(output.loss))}
                if is_bi:
                    # The same logits through upstream's uni-encoder loss, which passes every option by keyword.
                    labels = batch["labels"]
                    intended = UniEncoderSpanModel.loss(model.model, output.logits, labels, output.prompts_embedding_mask,
                                                        batch["span_mask"], **options)
                    case["intended_loss"] = repr(float(intended))
                    quirk = {k: v for k, v in options.items() if k not in ("prob_margin", "label_smoothing")}
                    if "label_smoothing" in options:
                        quirk["prob_margin"] = options["label_smoothing"]
                    check = UniEncoderSpanModel.loss(model.model, output.logits, labels, output.prompts_embedding_mask,
                                                     batch["span_mask"], **quirk)
                    assert torch.equal(check, output.loss), (setting, float(check), float(output.loss))
                    case["quirk_options"] = quirk
                cases.append(case)
        record["batches"].append({
            "name": batch_name,
            "examples": examples,
            "label_sets": [label_sets[0]] if is_bi else label_sets,
            "num_labels": int(batch["labels"].size(-1)),
            "num_spans": int(batch["span_mask"].sum()),
            "num_positives": int(batch["labels"].sum()),
            "cases": cases,
        })
    return record


def main() -> None:
    torch.set_grad_enabled(True)
    record = {
        "gliner_version": gliner.__version__,
        "torch": torch.__version__,
        "note": __doc__.split("\n\n", 3)[3].strip(),
        "models": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("uni", "bi", "deberta"):
            record["models"][name] = record_model(name, Path(tmp))
    OUT.write_text(json.dumps(record, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    for name, model_record in record["models"].items():
        for batch in model_record["batches"]:
            print(name, batch["name"], batch["label_sets"], [(c["setting"], c["loss"], c.get("intended_loss")) for c in batch["cases"]])
    print(f"wrote {OUT.relative_to(REPO)} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
