"""ONNX export (gliner/onnx_export.py) and the forward in ONNX Runtime (gliner/onnx_runtime.py): the graph gives the
torch model's entities, with scores within 1e-4, for a uni- and a bi-encoder, over batches, label sets and windowed
long texts whose sizes differ from the export's example."""
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch

from gliner import GLiNER
from gliner.onnx_export import ONNX_FILE, QUANTIZED_ONNX_FILE, export_onnx, graph_inputs, main
from gliner.evaluation.pubtator import read_pubtator

UPSTREAM_TEXT_INPUTS = ["input_ids", "attention_mask", "words_mask", "text_lengths", "span_idx", "span_mask"]


@pytest.fixture(scope="module")
def abstracts(data_dir) -> list[str]:
    """Twelve NCBI-disease test abstracts: longer than the tiny models' 40 words, so each is tagged in windows."""
    return [document.text for document in read_pubtator(data_dir / "ncbi-disease-pubtator/test.pubtator")[:12]]


def entity_keys(entities: list[list[dict]]) -> list[list[tuple]]:
    return [[(entity["start"], entity["end"], entity["label"]) for entity in text] for text in entities]


def largest_score_gap(expected: list[list[dict]], found: list[list[dict]]) -> float:
    return max((abs(a["score"] - b["score"]) for x, y in zip(expected, found) for a, b in zip(x, y)), default=0.0)


@pytest.mark.parametrize("fixture", ["trained_tiny_uni_dir", "trained_tiny_bi_dir"])
def test_onnx_runtime_gives_the_torch_models_entities(fixture, request, tmp_path, abstracts):
    model_dir = request.getfixturevalue(fixture)
    output = tmp_path / "onnx"
    assert main(["--model", str(model_dir), "--output", str(output), "--quantize"]) == 0

    torch_model = GLiNER.from_pretrained(model_dir)
    onnx_model = GLiNER.from_pretrained(output, onnx_file=ONNX_FILE)  # the output is a whole checkpoint too
    assert (output / "tokenizer.json").is_file() and (output / "gliner_config.json").is_file()
    session = onnx_model.onnx_forward.session
    names = [graph_input.name for graph_input in session.get_inputs()]
    label_inputs = ["labels_input_ids", "labels_attention_mask"] if torch_model.config.is_bi_encoder else []
    assert names == UPSTREAM_TEXT_INPUTS + label_inputs
    assert [output.name for output in session.get_outputs()] == ["logits"]

    for labels, threshold in ((["chemical", "disease"], 0.15), (["disease", "gene", "chemical"], 0.1)):
        expected = torch_model.inference(abstracts, labels, threshold=threshold, batch_size=5)
        found = onnx_model.inference(abstracts, labels, threshold=threshold, batch_size=5)
        assert sum(map(len, expected)) >= 20, "too few entities to compare"
        assert entity_keys(found) == entity_keys(expected)
        assert largest_score_gap(expected, found) < 1e-4

    # Raw logits of one batch: spans past a text's end are -inf in the graph, the rest match the torch forward.
    words = [abstracts[0].split()[:9], abstracts[1].split()[:4]]
    inputs = assert_graph_matches_torch(session, torch_model, words, ["disease"])

    # The int8 graph (dynamic quantization) runs on the same inputs; how well it agrees is benchmarks/onnx_inference.py's.
    quantized = onnxruntime.InferenceSession(str(output / QUANTIZED_ONNX_FILE), providers=["CPUExecutionProvider"])
    quantized_logits = quantized.run(["logits"], {name: tensor.numpy() for name, tensor in inputs.items()})[0]
    inside = inputs["span_mask"].view(quantized_logits.shape[:3]).numpy()
    assert quantized_logits.shape == (2, 9, torch_model.config.max_width, 1) and np.isfinite(quantized_logits[inside]).all()


def assert_graph_matches_torch(session, model: GLiNER, words: list[list[str]], labels: list[str]) -> dict:
    inputs = graph_inputs(model, words, labels)
    logits = session.run(["logits"], {name: tensor.numpy() for name, tensor in inputs.items()})[0]  # (B, W, K, C)
    reference = model.logits(words, labels).numpy()
    assert logits.shape == reference.shape == (len(words), max(map(len, words)), model.config.max_width, len(labels))
    inside = inputs["span_mask"].view(logits.shape[:3]).numpy()
    assert np.isneginf(logits[~inside]).all()
    assert np.abs(logits[inside] - reference[inside]).max() < 1e-4
    # Upstream's callers leave the spans past a text's end unmasked in span_idx (indices beyond its words).
    batch, words_count, width = logits.shape[:3]
    starts = torch.arange(words_count).repeat_interleave(width)
    unmasked = torch.stack([starts, starts + torch.arange(width).repeat(words_count)], dim=-1).expand(batch, -1, -1)
    feeds = {name: tensor.numpy() for name, tensor in inputs.items()} | {"span_idx": unmasked.contiguous().numpy()}
    assert np.array_equal(session.run(["logits"], feeds)[0], logits)
    return inputs


def test_graph_follows_the_models_options(tiny_backbone, tmp_path):
    """Labels read from their first word piece (embed_ent_token false) and the one-layer span head (marker)."""
    torch.manual_seed(3)
    model = GLiNER.from_backbone(str(tiny_backbone), hidden_size=16, max_len=40, max_width=6, span_mode="marker", embed_ent_token=False)
    export_onnx(model.save_pretrained(tmp_path / "model"), tmp_path / "onnx")
    session = onnxruntime.InferenceSession(str(tmp_path / "onnx" / ONNX_FILE), providers=["CPUExecutionProvider"])
    words = [["Cisplatin", "causes", "renal", "failure", "in", "mice", "."], ["BRCA1"], ["Aspirin", "and", "ibuprofen"]]
    assert_graph_matches_torch(session, model, words, ["chemical", "disease", "species"])


def test_onnx_forward_refuses_reduced_precision(trained_tiny_uni_dir, tmp_path):
    main(["--model", str(trained_tiny_uni_dir), "--output", str(tmp_path)])
    model = GLiNER.from_pretrained(tmp_path, onnx_file=ONNX_FILE)
    with pytest.raises(ValueError, match="ONNX graph"):
        model.set_precision("int8")
    torch_again = model.use_onnx(None)
    assert torch_again.onnx_forward is None
    # The torch forward again: the fresh model's logits up to float rounding (on an AVX2-only EPYC the two differed in
    # the last bits, identical to 4 digits; on the CPUs with AVX-512 they were bit-identical).
    torch.testing.assert_close(torch_again.logits([["aspirin"]], ["chemical"]), GLiNER.from_pretrained(trained_tiny_uni_dir).logits([["aspirin"]], ["chemical"]),
                               rtol=1e-5, atol=1e-6)


def test_a_deberta_checkpoint_exports_with_every_size_dynamic(tmp_path):
    """GLiNER-biomed's backbones are DeBERTa-v2: the parity suite's small DeBERTa uni-encoder, exported from two texts
    and two labels, runs other batch sizes, lengths and label counts."""
    sys.path.insert(0, str(Path(__file__).parent / "parity"))
    from assemble import assemble_checkpoint

    checkpoint = assemble_checkpoint("deberta", tmp_path / "checkpoint")
    export_onnx(checkpoint, tmp_path / "onnx")
    model = GLiNER.from_pretrained(checkpoint)
    session = onnxruntime.InferenceSession(str(tmp_path / "onnx" / ONNX_FILE), providers=["CPUExecutionProvider"])
    assert_graph_matches_torch(session, model, [["Aspirin", "eases", "migraine", "in", "adults", "."] * 5, ["BRCA1"], ["x"]], ["chemical", "disease", "gene"])
    assert_graph_matches_torch(session, model, [["Hypertension"]], ["disease"])
