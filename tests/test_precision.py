"""Reduced CPU precisions (gliner/precision.py) check themselves against fp32 when switched on: dynamic int8 of the
packaged MiniLM backbone is refused with fp32 kept, bf16 that agrees is accepted, and windows, the label cache,
threshold sweeps and saving keep working in every mode. The models are the parity fixtures: heads trained by
upstream's trainer on the packaged MiniLM, so they predict several entities per text."""
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent / "parity"))
from assemble import assemble_checkpoint  # noqa: E402

from gliner import GLiNER  # noqa: E402
from gliner import precision as precision_module  # noqa: E402
from gliner.precision import PrecisionRefused, entity_agreement, load_calibration, reduced_copy  # noqa: E402

LONG_TEXT = " ".join(load_calibration()[0][:3])  # about 600 words: several windows


@pytest.fixture(autouse=True)
def cpu_with_reduced_kernels(monkeypatch):
    """The modes' semantics on any CPU: one without bf16 or VNNI instructions runs them emulated, slower but the same
    (the fallback itself is tested below)."""
    monkeypatch.setattr(precision_module, "cpu_flags", lambda: {"avx512_bf16", "avx512_vnni"})


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    return {name: assemble_checkpoint(name, tmp_path_factory.mktemp(name)) for name in ("uni", "bi")}


def keys(entities_per_text) -> list[set]:
    return [{(entity["start"], entity["end"], entity["label"]) for entity in entities} for entities in entities_per_text]


def test_int8_of_the_packaged_minilm_is_refused_and_fp32_kept(checkpoints):
    model = GLiNER.from_pretrained(checkpoints["uni"])
    texts, labels = load_calibration()
    before = model.inference(texts[:4], labels)
    weights = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    with pytest.raises(PrecisionRefused, match=r"precision int8 refused, the model stays fp32: .* F1 0\.[0-8]"):
        model.set_precision("int8")
    check = model.precision_check  # the refusal is on record: what a job's summary reports
    assert model.precision == "fp32" and check["accepted"] is False and check["f1"] < 0.99 and check["min_agreement"] == 0.99
    assert all(torch.equal(weights[name], tensor) for name, tensor in model.state_dict().items())
    assert model.inference(texts[:4], labels) == before


def test_bf16_that_agrees_is_accepted_and_everything_keeps_working(checkpoints, tmp_path):
    """The bi-encoder in bf16: accepted at its measured agreement, the label cache filled once per label set,
    windows and a threshold sweep agree with fp32, saving writes the fp32 weights, and fp32 comes back exactly."""
    model = GLiNER.from_pretrained(checkpoints["bi"])
    labels = ["disease", "gene", "chemical", "protein"]
    exact = model.inference([LONG_TEXT], labels)
    exact_sweep = model.inference_at_thresholds([LONG_TEXT], labels, [0.3, 0.6])
    model.set_precision("bf16", min_agreement=0.98)
    check = model.precision_check
    assert model.precision == "bf16" and check["accepted"] and check["f1"] >= 0.98 and check["fp32_entities"] > 20
    assert model.model.backbone.embeddings.word_embeddings.weight.dtype == torch.bfloat16
    assert model.model.span_head.project_start[0].weight.dtype == torch.bfloat16
    assert model.model.span_head.last_layer.weight.dtype == torch.float32  # label dot-products and logits stay fp32

    cached = len(model._label_cache)  # the calibration's label set, encoded during the check
    reduced = model.inference([LONG_TEXT], labels, long_text="window")
    assert len(model._label_cache) == cached + 1 and model.inference([LONG_TEXT[:200]], labels) and len(model._label_cache) == cached + 1
    agreement = entity_agreement("bf16", exact, reduced, 0.5)
    assert agreement.fp32_entities >= 5 and agreement.f1 >= 0.9
    sweep = model.inference_at_thresholds([LONG_TEXT], labels, [0.3, 0.6])
    for threshold in (0.3, 0.6):
        assert entity_agreement("bf16", exact_sweep[threshold], sweep[threshold], threshold).f1 >= 0.9

    saved = GLiNER.from_pretrained(model.save_pretrained(tmp_path / "saved"))
    assert all(tensor.dtype == torch.float32 for tensor in saved.state_dict().values() if tensor.is_floating_point())
    assert saved.inference([LONG_TEXT], labels) == exact
    model.set_precision("fp32")
    assert model.precision == "fp32" and model.precision_check is None and model.inference([LONG_TEXT], labels) == exact


def test_int8_runs_windows_and_decoding_when_allowed(checkpoints):
    """min_agreement=0 lets int8 through: quantized backbone and head linears (not the factorised out_project),
    fp32 logits, windows and decoding as usual."""
    model = GLiNER.from_pretrained(checkpoints["uni"]).set_precision("int8", min_agreement=0.0)
    assert model.precision == "int8" and 0.0 < model.precision_check["f1"] < 0.99
    quantized = [module for module in model.model.backbone.modules() if isinstance(module, torch.ao.nn.quantized.dynamic.Linear)]
    assert len(quantized) >= 6 * 6  # 6 layers x (query, key, value, attention output, intermediate, output)
    assert not any(type(module) is torch.nn.Linear for module in model.model.backbone.modules())
    head = model.model.span_head
    assert isinstance(head.project_start[0], torch.ao.nn.quantized.dynamic.Linear) and type(head.out_project[0]) is torch.nn.Linear
    found = model.inference([LONG_TEXT, "Aspirin"], ["disease", "chemical"], long_text="window")
    assert found[0] and all(isinstance(entity["score"], float) for entity in found[0])
    model.train()  # training never updates a reduced copy
    assert model.precision == "fp32" and type(model.model.backbone.encoder.layer[0].attention.self.query) is torch.nn.Linear


def test_compiled_bf16_checks_itself_and_keeps_windows_decoding_and_fp32_working(checkpoints):
    """compile=True: the bf16 copy's text backbone is compiled (inductor freezing) before the self-check, which
    measures the compiled model; windows, a batch of one (a new shape) and the way back to exact fp32 keep working."""
    model = GLiNER.from_pretrained(checkpoints["uni"])
    labels = ["disease", "gene", "chemical"]
    calibration = (load_calibration()[0][:8], labels)  # a short check: compiling is the slow part here
    exact = model.inference([LONG_TEXT], labels)
    eager = GLiNER.from_pretrained(checkpoints["uni"]).set_precision("bf16", calibration=calibration, min_agreement=0.0)
    eager = eager.inference([LONG_TEXT], labels)
    model.set_precision("bf16", calibration=calibration, compile=True, min_agreement=0.95)
    check = model.precision_check
    assert model.precision == "bf16" and check["compiled"] is True and check["accepted"] and check["f1"] >= 0.95 and check["texts"] == 8
    assert "forward" in vars(model.model.backbone) and "forward" not in vars(model._exact_model[0].backbone)
    compiled = model.inference([LONG_TEXT], labels, long_text="window")
    assert entity_agreement("bf16", exact, compiled, 0.5).f1 >= 0.95 and entity_agreement("bf16", eager, compiled, 0.5).f1 >= 0.98
    assert model.inference(["Aspirin causes Reye syndrome."], labels, batch_size=1)[0]
    model.set_precision("fp32")
    assert model.precision == "fp32" and model.inference([LONG_TEXT], labels) == exact
    with pytest.raises(ValueError, match="compile=True is for precision bf16"):
        model.set_precision("int8", compile=True)
    # A model compiled by GLiNER.compile() gives reduced copies that run their own weights, not the original's.
    copy = reduced_copy(model.compile().model, "bf16")
    assert "forward" in vars(model.model.backbone) and "forward" not in vars(copy.backbone)


def test_a_model_that_cannot_compile_runs_eager_bf16_with_a_warning(checkpoints, monkeypatch):
    import torch._inductor.config as inductor
    from torch._inductor.utils import fresh_cache

    monkeypatch.setattr(inductor.cpp, "cxx", (None, "/nonexistent/c++"))  # a node without a C++ compiler
    model = GLiNER.from_pretrained(checkpoints["uni"])
    with fresh_cache(), pytest.warns(UserWarning, match="precision bf16: the model could not be compiled, it runs eager: .*C\\+\\+ compiler"):
        model.set_precision("bf16", calibration=(["Aspirin causes Reye syndrome."], ["disease"]), compile=True, min_agreement=0.0)
    assert model.precision == "bf16" and model.precision_check["compiled"] is False
    assert "forward" not in vars(model.model.backbone) and model.inference([LONG_TEXT], ["disease"])


def test_agreement_over_no_entities_is_undefined_and_refused(checkpoints):
    model = GLiNER.from_pretrained(checkpoints["uni"])
    with pytest.raises(PrecisionRefused, match="undefined: fp32 finds no entity"):
        model.set_precision("bf16", calibration=(["and the of"], ["disease"]), min_agreement=0.01)
    assert entity_agreement("bf16", [[]], [[]], 0.5).f1 is None
    assert model.precision == "fp32" and model.precision_check["f1"] is None and model.precision_check["accepted"] is False
    model.set_precision("bf16", calibration=(["and the of"], ["disease"]), min_agreement=0.0)  # 0: measure, never refuse
    assert model.precision == "bf16" and model.precision_check["f1"] is None and model.precision_check["accepted"] is True


def test_a_cpu_without_the_kernels_stays_fp32_with_a_warning(checkpoints, monkeypatch):
    monkeypatch.setattr(precision_module, "cpu_flags", lambda: {"avx2"})
    model = GLiNER.from_pretrained(checkpoints["uni"])
    for mode in ("bf16", "int8"):
        with pytest.warns(UserWarning, match=f"precision {mode} not applied, staying fp32: this CPU has no"):
            model.set_precision(mode)
        assert model.precision == "fp32" and model.precision_check is None
    with pytest.raises(ValueError, match="precision must be one of"):
        model.set_precision("int4")
