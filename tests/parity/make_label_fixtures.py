"""Record upstream GLiNER's predictions for labels given as descriptions and per text, on the parity checkpoints.

Run by hand, in the venv with the upstream library (`make upstream-venv`), after make_fixtures.py:

    .venv-upstream/bin/python tests/parity/make_label_fixtures.py

For the uni- and bi-encoder fixtures it predicts PARITY_TEXTS (1) with SHORT_LABELS given as a mapping of each label
to a description, which the model reads instead of the label, and (2) with a label set per text, lists and
mappings in turn; each at the threshold of the model's first recorded case. Writes
tests/fixtures/parity/upstream_label_forms.json; tests/test_label_sets.py checks that we predict the same.
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
if __name__ == "__main__" and os.environ.get("PYTHONHASHSEED") != "0":
    # Upstream's bi-encoder collator orders each batch's label set through set(): fix string hashing.
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "PYTHONHASHSEED": "0"})

import gliner  # noqa: E402  (upstream)

sys.path.insert(0, str(Path(__file__).parent))
from assemble import FIXTURES, assemble_checkpoint, load_upstream_record  # noqa: E402
from cases import PARITY_TEXTS, label_form_cases  # noqa: E402


def main() -> None:
    record = load_upstream_record()
    out = {"gliner_version": gliner.__version__, "texts": PARITY_TEXTS, "models": {}}
    for name in ("uni", "bi"):
        with tempfile.TemporaryDirectory() as directory:
            model = gliner.GLiNER.from_pretrained(str(assemble_checkpoint(name, Path(directory))))
            threshold = record["models"][name][0]["threshold"]
            cases = []
            for case_name, labels in label_form_cases().items():
                predictions = model.inference(PARITY_TEXTS, labels, threshold=threshold, flat_ner=True, multi_label=False, batch_size=8)
                cases.append({"name": case_name, "labels": labels, "threshold": threshold, "predictions": predictions})
            out["models"][name] = cases
    path = FIXTURES / "upstream_label_forms.json"
    path.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {path}: " + ", ".join(f"{name} {sum(len(p) for c in cases for p in c['predictions'])} entities" for name, cases in out["models"].items()))


if __name__ == "__main__":
    main()
