"""Our predictions on upstream-made checkpoints equal those upstream gliner 0.2.29 recorded (fixtures made by
tests/parity/make_fixtures.py): identical spans and labels, scores within 1e-5, fp32."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "parity"))
from assemble import assemble_checkpoint, load_upstream_record  # noqa: E402

from gliner import GLiNER  # noqa: E402

RECORD = load_upstream_record()


@pytest.fixture(scope="module", params=["uni", "bi", "deberta"])
def parity_model(request, tmp_path_factory):
    """Reference mode: upstream's computation step by step, for exact parity."""
    directory = assemble_checkpoint(request.param, tmp_path_factory.mktemp(request.param))
    model = GLiNER.from_pretrained(directory)
    model.reference_mode = True
    return request.param, model


def assert_same_predictions(ours: list[dict], theirs: list[dict], context: str) -> None:
    assert [(e["start"], e["end"], e["label"]) for e in ours] == [(e["start"], e["end"], e["label"]) for e in theirs], context
    for a, b in zip(ours, theirs):
        assert a["text"] == b["text"], context
        assert abs(a["score"] - b["score"]) <= 1e-5, context


def test_fixture_is_varied_enough():
    texts = RECORD["texts"]
    assert len(texts) >= 30
    assert any(len(t.split()) > 48 for t in texts), "needs texts longer than max_len"
    assert any(not t.isascii() for t in texts)
    for name in ("uni", "bi", "deberta"):
        cases = RECORD["models"][name]
        assert any(len(c["labels"]) >= 20 for c in cases)
        assert any(not c["flat_ner"] for c in cases) and any(c["multi_label"] for c in cases)
        assert sum(len(p) for c in cases for p in c["predictions"]) > 500


def test_same_entities_as_upstream(parity_model):
    name, model = parity_model
    for case_index, case in enumerate(RECORD["models"][name]):
        ours = model.inference(RECORD["texts"], case["labels"], threshold=case["threshold"], flat_ner=case["flat_ner"],
                               multi_label=case["multi_label"], batch_size=8, long_text="truncate")
        for text_index, (a, b) in enumerate(zip(ours, case["predictions"])):
            assert_same_predictions(a, b, f"{name} case {case_index} text {text_index}")


def test_windowing_leaves_texts_that_fit_untouched(parity_model):
    name, model = parity_model
    case = RECORD["models"][name][0]
    fitting = [i for i, t in enumerate(RECORD["texts"]) if len(t.split()) < 40 and len(t) < 300]
    texts = [RECORD["texts"][i] for i in fitting]
    ours = model.inference(texts, case["labels"], threshold=case["threshold"], long_text="window")
    for i, predictions in zip(fitting, ours):
        assert_same_predictions(predictions, case["predictions"][i], f"{name} text {i}")


def test_single_text_api_matches_batch(parity_model):
    name, model = parity_model
    case = RECORD["models"][name][1]
    for i in (0, 5, 12):
        ours = model.predict_entities(RECORD["texts"][i], case["labels"], threshold=case["threshold"], long_text="truncate")
        assert_same_predictions(ours, case["predictions"][i], f"{name} text {i}")
