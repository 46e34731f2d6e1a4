"""Our training loss equals upstream gliner 0.2.29's on the same batches (fixture made by
tests/parity/make_loss_fixtures.py on the parity checkpoints, eval mode, fp32), by upstream's computation
(tests/parity/reference.py) and by the library's.

Bi-encoders: upstream's BiEncoderSpanModel.loss passes label_smoothing positionally into `prob_margin` and drops
`prob_margin` (see the fixture's note). Our loss must equal what upstream's keyword-correct uni-encoder loss gives
on the bi-encoder's logits ("intended_loss"), and, given the remapped options ("quirk_options"), what upstream's
bi-encoder really returns ("loss").
"""
import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent / "parity"))
from assemble import FIXTURES, assemble_checkpoint  # noqa: E402
from reference import reference_batch_loss  # noqa: E402

from gliner import GLiNER  # noqa: E402
from gliner.training import batch_loss, build_training_batch, parse_example  # noqa: E402

RECORD = json.loads((FIXTURES / "upstream_losses.json").read_text(encoding="utf-8"))
RTOL = 1e-4


@pytest.fixture(scope="module", params=["uni", "bi", "deberta"])
def loss_model(request, tmp_path_factory):
    name = request.param
    model = GLiNER.from_pretrained(assemble_checkpoint(name, tmp_path_factory.mktemp(name)))
    model.model.eval()
    return name, model


def training_batch(model: GLiNER, recorded: dict) -> dict[str, torch.Tensor]:
    config = model.config
    examples = [parse_example(raw, config.max_width, config.max_len) for raw in recorded["examples"]]
    return build_training_batch(config, model.tokenizer, examples, recorded["label_sets"], model.labels_tokenizer)


def assert_close(ours: torch.Tensor, theirs: str, context: str) -> None:
    ours, theirs = float(ours), float(theirs)
    assert abs(ours - theirs) <= RTOL * abs(theirs), f"{context}: ours {ours!r} vs upstream {theirs!r}"


def test_fixture_covers_what_matters():
    assert RECORD["gliner_version"] == "0.2.29"
    for name, model_record in RECORD["models"].items():
        examples = [raw for batch in model_record["batches"] for raw in batch["examples"]]
        assert any(not raw["ner"] for raw in examples), name
        assert any(end > start for raw in examples for start, end, _ in raw["ner"]), name
        assert any(len(raw["tokenized_text"]) > model_record["max_len"] for raw in examples), name
        # spans past max_len, one of them starting before it: cutting them away with the text matters
        max_len = model_record["max_len"]
        assert any(start < max_len <= end for raw in examples for start, end, _ in raw["ner"]), name
        assert any(start >= max_len for raw in examples for start, _, _ in raw["ner"]), name
        settings = {case["setting"] for batch in model_record["batches"] for case in batch["cases"]}
        assert {"bce_sum", "focal", "label_smoothing", "mean", "prob_margin"} <= settings, name


def test_batches_match_upstream_shapes(loss_model):
    name, model = loss_model
    for recorded in RECORD["models"][name]["batches"]:
        batch = training_batch(model, recorded)
        context = f"{name}/{recorded['name']}"
        assert batch["labels"].size(-1) == recorded["num_labels"], context
        assert int(batch["span_mask"].sum()) == recorded["num_spans"], context
        assert int(batch["labels"].sum()) == recorded["num_positives"], context


@pytest.mark.parametrize("reference", [True, False], ids=["reference", "fast"])
def test_loss_equals_upstream(loss_model, reference):
    name, model = loss_model
    loss_of = reference_batch_loss if reference else batch_loss
    is_bi = RECORD["models"][name]["bi_encoder"]
    assert is_bi == model.config.is_bi_encoder
    with torch.no_grad():
        for recorded in RECORD["models"][name]["batches"]:
            batch = training_batch(model, recorded)
            for case in recorded["cases"]:
                context = f"{name}/{recorded['name']}/{case['setting']} reference={reference}"
                ours = loss_of(model.model, batch, **case["options"])
                if is_bi:
                    assert_close(ours, case["intended_loss"], context + " (upstream's keyword-correct loss)")
                    quirky = loss_of(model.model, batch, **case["quirk_options"])
                    assert_close(quirky, case["loss"], context + " (upstream bi-encoder quirk)")
                else:
                    assert_close(ours, case["loss"], context)


def test_bi_encoder_quirk_is_recorded():
    """Upstream's bi-encoder loss really differs from the intended one exactly where smoothing or margin is set."""
    for batch in RECORD["models"]["bi"]["batches"]:
        for case in batch["cases"]:
            touched = "label_smoothing" in case["options"] or "prob_margin" in case["options"]
            assert (float(case["loss"]) != float(case["intended_loss"])) == touched, case["setting"]


def test_fast_path_gradients_flow_and_match_reference(loss_model):
    name, model = loss_model
    recorded = RECORD["models"][name]["batches"][0]
    batch = training_batch(model, recorded)
    params = dict(model.model.span_head.named_parameters())
    assert params
    grads = {}
    for reference in (False, True):
        model.model.zero_grad(set_to_none=True)
        loss = (reference_batch_loss if reference else batch_loss)(model.model, batch, alpha=0.75, gamma=2.0)
        loss.backward()
        grads[reference] = {key: param.grad.detach().clone() for key, param in params.items() if param.grad is not None}
    model.model.zero_grad(set_to_none=True)
    fast, slow = grads[False], grads[True]
    assert fast.keys() == params.keys(), f"{name}: no gradient for {sorted(params.keys() - fast.keys())}"
    assert any(grad.abs().sum() > 0 for grad in fast.values()), name
    for key in params:
        if params[key].dim() > 1:  # every weight matrix learns
            assert fast[key].abs().sum() > 0, f"{name}: zero gradient for {key}"
        scale = slow[key].abs().max().clamp(min=1e-8)
        assert (fast[key] - slow[key]).abs().max() <= 1e-3 * scale, f"{name}: {key} fast vs reference gradient"
