"""Our predictions on upstream-made checkpoints equal those upstream gliner 0.2.29 recorded (fixtures made by
tests/parity/make_fixtures.py): the same spans and labels in the same order, scores within 1e-5, fp32; both through
upstream's computation step by step (tests/parity/reference.py) and through the library's own fast path.

The fixtures' heads were trained briefly with upstream's own trainer, and each case's threshold lies in the widest
gap between candidate scores, so no recorded decision rests on a near tie (make_fixtures.py records how decisive
each case is: the smallest distance of a candidate score to the threshold, and of a kept entity's score to a
conflicting rival's, are in upstream_predictions.json)."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "parity"))
from assemble import assemble_checkpoint, load_upstream_record  # noqa: E402
from reference import ReferenceGLiNER  # noqa: E402

from gliner import GLiNER  # noqa: E402

RECORD = load_upstream_record()


SCORE_TOLERANCE = 1e-5


@pytest.fixture(scope="module", params=[(name, path) for name in ("uni", "bi", "deberta") for path in ("reference", "library")],
                ids=lambda param: "-".join(param))
def parity_model(request, tmp_path_factory):
    name, path = request.param
    directory = assemble_checkpoint(name, tmp_path_factory.mktemp(name))
    return name, (ReferenceGLiNER if path == "reference" else GLiNER).from_pretrained(directory)


def assert_same_predictions(ours: list[dict], theirs: list[dict], context: str) -> None:
    """The same entities (span, label, text) in the same order, scores within SCORE_TOLERANCE."""
    assert [(e["start"], e["end"], e["label"], e["text"]) for e in ours] == [(e["start"], e["end"], e["label"], e["text"]) for e in theirs], context
    assert all(abs(a["score"] - b["score"]) <= SCORE_TOLERANCE for a, b in zip(ours, theirs)), context


def test_fixture_cases_are_decisive():
    """Every recorded decision clears the threshold and every rival by far more than floating-point noise."""
    for name, cases in RECORD["decisiveness"].items():
        for case in cases:
            assert case["threshold_margin"] > 1e-3 and case["rival_gap"] > 1e-5, (name, case)


def test_fixture_is_varied_enough():
    texts = RECORD["texts"]
    assert len(texts) >= 30
    assert any(len(t.split()) > 48 for t in texts), "needs texts longer than max_len"
    assert any(not t.isascii() for t in texts)
    for name in ("uni", "bi", "deberta"):
        cases = RECORD["models"][name]
        assert any(len(c["labels"]) >= 20 for c in cases)
        assert any(not c["flat_ner"] for c in cases) and any(c["multi_label"] for c in cases)
        assert sum(len(p) for c in cases for p in c["predictions"]) > 250  # more than one per text and case


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
