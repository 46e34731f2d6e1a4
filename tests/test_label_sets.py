"""Labels as users give them: a mapping of label to description (the model reads the description, the entity
carries the label) and one label set per text, predicted as upstream gliner 0.2.29 predicts them on the parity
checkpoints (tests/parity/make_label_fixtures.py recorded upstream's entities)."""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "parity"))
from assemble import FIXTURES, assemble_checkpoint  # noqa: E402

from gliner import GLiNER  # noqa: E402
from gliner.label_sets import LabelSet, label_sets_per_text  # noqa: E402

RECORD = json.loads((FIXTURES / "upstream_label_forms.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", ["uni", "bi"])
def test_descriptions_and_per_text_label_sets_find_what_upstream_finds(name, tmp_path):
    model = GLiNER.from_pretrained(assemble_checkpoint(name, tmp_path))
    for case in RECORD["models"][name]:
        ours = model.inference(RECORD["texts"], case["labels"], threshold=case["threshold"], batch_size=8, long_text="truncate")
        for index, (a, b) in enumerate(zip(ours, case["predictions"], strict=True)):
            context = f"{name} {case['name']} text {index}"
            assert [(e["start"], e["end"], e["label"], e["text"]) for e in a] == [(e["start"], e["end"], e["label"], e["text"]) for e in b], context
            assert all(abs(x["score"] - y["score"]) <= 1e-5 for x, y in zip(a, b)), context
    described = RECORD["models"][name][0]
    labels = {entity["label"] for entities in described["predictions"] for entity in entities}
    assert labels and labels <= set(described["labels"])  # the entities carry the labels, never the descriptions
    per_text = RECORD["models"][name][1]
    assert all({e["label"] for e in entities} <= set(label_set) for entities, label_set in zip(per_text["predictions"], per_text["labels"]))
    assert sum(map(len, described["predictions"])) > 30 and sum(map(len, per_text["predictions"])) > 30


def test_bad_label_forms_are_refused_with_the_reason():
    assert LabelSet.of({"disease": "a disease"}) == LabelSet(("a disease",), ("disease",))
    assert LabelSet.of(["gene", "gene", "disease"]).names == ("gene", "disease")
    with pytest.raises(ValueError, match="must differ"):
        LabelSet.of({"disease": "illness", "syndrome": "illness"})
    with pytest.raises(ValueError, match="strings to strings"):
        LabelSet.of({"disease": 3})
    with pytest.raises(ValueError, match="2 label sets for 3 texts"):
        label_sets_per_text([["a"], ["b"]], 3)
    with pytest.raises(ValueError, match="for every text"):
        label_sets_per_text([["a"], "b"], 2)


def test_label_vectors_encoded_once_are_reused_and_refused_for_another_model(tiny_bi_dir, tiny_uni_dir, tmp_path):
    """1,200 labels encoded once (in batches), saved, loaded: a model given them never runs its label encoder, and
    finds what encoding them itself finds."""
    from gliner.label_vectors import encode_all, load, save
    from gliner.model_path import model_fingerprint

    labels = ["disease", "chemical", "gene"] + [f"entity type {index}" for index in range(1197)]
    texts = ["Aspirin reduces the risk of myocardial infarction in diabetic patients.", "BRCA1 mutations cause breast cancer."]
    encoder = GLiNER.from_pretrained(tiny_bi_dir)
    path = save(tmp_path / "labels.safetensors", labels, encode_all(encoder, labels), model_fingerprint(str(tiny_bi_dir)))
    vectors = load(path, model_fingerprint(str(tiny_bi_dir)))
    assert list(vectors) == labels and vectors["gene"].shape == (encoder.config.hidden_size,)
    expected = encoder.inference(texts, labels, threshold=0.3)
    given = GLiNER.from_pretrained(tiny_bi_dir).use_label_vectors(vectors)
    given.model.encode_labels = lambda *args: pytest.fail("the label encoder ran")
    found = given.inference(texts, labels, threshold=0.3)
    assert sum(map(len, expected)) > 0
    for a, b in zip(found, expected, strict=True):
        assert [(e["start"], e["end"], e["label"]) for e in a] == [(e["start"], e["end"], e["label"]) for e in b]
        assert all(abs(x["score"] - y["score"]) <= 1e-5 for x, y in zip(a, b))
    with pytest.raises(ValueError, match="another model"):
        load(path, model_fingerprint(str(tiny_uni_dir)))
    with pytest.raises(ValueError, match="needs a bi-encoder"):
        GLiNER.from_pretrained(tiny_uni_dir).use_label_vectors(vectors)


def test_the_tag_jobs_stages_carry_each_parquet_documents_own_labels_to_its_entities(tiny_uni_dir, data_dir, tmp_path):
    """Read and prepare (no Ray): each document's label set from a Parquet map column (label -> description), the
    documents that share one batched together, one without labels an error row; the commit names the spans found
    for a description by its label."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from gliner.decoding import Span
    from ray_jobs.runtime.job_command import BadInput
    from ray_jobs.tag import TagConfig, commit_unit, read_documents, run, tagged_unit
    from corpus.tag_batches import batches_of, label_sets_of
    from ray_jobs.runtime.unit_pipeline import unpack
    from corpus.work_units import plan_inputs

    described = [("disease", "illness"), ("chemical", "drug")]
    rows = [{"doc_id": "a", "text": "Aspirin eased the headache.", "types": described},
            {"doc_id": "b", "text": "BRCA1 variants cause breast cancer.", "types": [("gene", "gene")]},
            {"doc_id": "c", "text": "Nothing to ask for.", "types": None},
            {"doc_id": "d", "text": "Ibuprofen eased the migraine.", "types": described}]
    schema = pa.schema([("doc_id", pa.string()), ("text", pa.string()), ("types", pa.map_(pa.string(), pa.string()))])
    pq.write_table(pa.Table.from_pylist(rows, schema), tmp_path / "docs.parquet")
    config = TagConfig(model=str(tiny_uni_dir), labels_column="types", input=str(tmp_path / "docs.parquet"), output=str(tmp_path / "out"))
    [row] = read_documents(plan_inputs(config.input, "auto", config.units.sizes()), config.model_dump(), None)
    documents, label_sets = unpack(row, "documents"), label_sets_of(unpack(row, "label_sets"))
    assert documents["doc_id"].to_pylist() == ["a", "b", "d"] and documents["label_set"].to_pylist() == [0, 1, 0]
    assert label_sets == [LabelSet(("illness", "drug"), ("disease", "chemical")), LabelSet(("gene",), ("gene",))]
    assert [(error["doc_id"], error["reason"]) for error in unpack(row, "errors").to_pylist()] == [("c", "labels")]
    document_of_chunk = unpack(row, "windows")["text_index"].to_pylist()  # one window each, grouped by label set
    batches = batches_of(unpack(row, "batches"), label_sets)
    assert sorted((batch.labels, sorted(document_of_chunk[chunk] for chunk in batch.chunk_indices)) for batch in batches) == [
        (("gene",), [1]), (("illness", "drug"), [0, 2])]
    chunk_of = {document: chunk for chunk, document in enumerate(document_of_chunk)}
    spans = {chunk_of[0]: [Span(0, 0, "drug", 0.9), Span(3, 3, "illness", 0.8)], chunk_of[1]: [Span(0, 0, "gene", 0.7)]}
    commit_unit(tagged_unit(row, spans, {"actor": "a", "tag_seconds": 0.0}), config.model_dump())
    entities = pq.read_table(next((tmp_path / "out/entities").glob("*.parquet"))).to_pylist()
    assert [(e["doc_id"], e["text"], e["label"]) for e in entities] == [("a", "Aspirin", "chemical"), ("a", "headache", "disease"), ("b", "BRCA1", "gene")]
    with pytest.raises(BadInput, match=r"only JSONL and Parquet records have columns, and the input has \['pubtator'\]"):
        run(config.model_copy(update={"input": str(data_dir / "ncbi-disease-pubtator/test.pubtator")}))
