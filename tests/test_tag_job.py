"""The tag job on a real local Ray (2 CPUs): single big files cut into work units and tagged by two actors, with the
entities the library's own `inference` finds; a run killed part-way through a file and rerun; every input format with
its odd records; PubMed baseline and update files folded into OUTPUT/current."""
import gzip
import json
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import kill_process_tree
from ray_jobs.tag import TagConfig, UnitTagger, run

sys.path.insert(0, str(Path(__file__).parent / "parity"))
from near_ties import assert_same_predictions  # noqa: E402
from synth.documents import Document, read_documents
from synth.work_units import infer_format

pytestmark = pytest.mark.ray


def test_near_ties_are_the_only_differences_allowed():
    """The comparison this module's tests use (tests/parity/near_ties.py): random models in Ray batches against the
    library, where floating-point noise may decide near ties."""
    entity = lambda start, end, label, score: {"start": start, "end": end, "label": label, "score": score, "text": "x"}  # noqa: E731
    chosen, rival = entity(0, 10, "gene", 0.512641), entity(0, 10, "disease", 0.512644)
    assert assert_same_predictions([chosen], [rival], "label flip on a near tie", 0.5) == 2
    assert assert_same_predictions([], [entity(4, 9, "gene", 0.500004)], "kept at the threshold", 0.5) == 1
    with pytest.raises(AssertionError, match="without a near tie"):
        assert_same_predictions([entity(0, 10, "gene", 0.52)], [entity(0, 10, "disease", 0.51)], "a real difference", 0.5)
    with pytest.raises(AssertionError, match="without a near tie"):
        assert_same_predictions([chosen, entity(20, 30, "drug", 0.6)], [rival], "an extra entity", 0.5)
    with pytest.raises(AssertionError):
        assert_same_predictions([entity(0, 10, "gene", 0.52)], [entity(0, 10, "gene", 0.53)], "a score off", 0.5)
    with pytest.raises(AssertionError, match="not upstream's order"):
        assert_same_predictions([entity(0, 4, "gene", 0.51), entity(0, 9, "gene", 0.53)],
                                [entity(0, 9, "gene", 0.53), entity(0, 4, "gene", 0.51)], "out of order", 0.5)


REPO = Path(__file__).resolve().parents[1]
LABELS = ["disease", "chemical"]
THRESHOLD = 0.15
DOCUMENTS = 20_000


@pytest.fixture(scope="module")
def decisive_model(trained_tiny_uni_dir) -> Path:
    return trained_tiny_uni_dir


@pytest.fixture(scope="module")
def big_files(tmp_path_factory, short_texts) -> Path:
    """One Parquet file (row groups of 2,000) and one JSONL file, each of the 20,000 short documents, in one folder."""
    folder = tmp_path_factory.mktemp("big")
    rows = [{"doc_id": f"p{index:05d}", "text": text} for index, text in enumerate(short_texts)]
    pq.write_table(pa.Table.from_pylist(rows), folder / "corpus.parquet", row_group_size=2000)
    with open(folder / "corpus.jsonl", "w", encoding="utf-8") as handle:
        for index, text in enumerate(short_texts):
            handle.write(json.dumps({"doc_id": f"j{index:05d}", "text": text}) + "\n")
    return folder


@pytest.fixture(scope="module")
def direct_entities(decisive_model, short_texts) -> dict[int, list[dict]]:
    """What the library's inference finds in each text, called directly on all of them at once."""
    import torch

    from gliner import GLiNER

    torch.set_num_threads(2)
    predictions = GLiNER.from_pretrained(decisive_model).inference(short_texts, LABELS, threshold=THRESHOLD, batch_size=32)
    return dict(enumerate(predictions))


def tag_config(model: Path, input_path: Path, output: Path, **changes) -> TagConfig:
    values = {"model": str(model), "labels": LABELS, "threshold": THRESHOLD, "input": str(input_path), "output": str(output), "batch_size": 32,
              "units": {"documents": 2500}, "min_actors": 2, "max_actors": 2, "cpus_per_actor": 0.5, "torch_threads": 1}
    return TagConfig.model_validate(values | changes)


def read_rows(folder: Path) -> list[dict]:
    rows = [row for path in sorted(folder.glob("*.parquet")) for row in pq.read_table(path).to_pylist()]
    return sorted(rows, key=lambda row: tuple(str(value) for value in row.values()))


def by_document(rows: list[dict]) -> dict[str, list[dict]]:
    documents: dict[str, list[dict]] = {}
    for row in sorted(rows, key=lambda row: (row["doc_id"], row["start"], -row["score"])):
        documents.setdefault(row["doc_id"], []).append(row)
    return documents


def assert_same_entities(rows: list[dict], expected: list[dict]) -> None:
    """The same entities per document, up to floating-point noise between batches of other documents."""
    found, wanted = by_document(rows), by_document(expected)
    assert found.keys() == wanted.keys()
    differing = sum(assert_same_predictions(found[doc_id], wanted[doc_id], doc_id, THRESHOLD) for doc_id in wanted)
    assert differing <= len(expected) / 1000


@pytest.fixture(scope="module")
def tagged_big_files(local_ray, decisive_model, big_files, tmp_path_factory):
    output = tmp_path_factory.mktemp("tagged_big") / "out"
    return output, run(tag_config(decisive_model, big_files, output))


def test_big_single_files_split_into_units_tagged_by_two_actors_equal_direct_inference(tagged_big_files, direct_entities, big_files):
    output, summary = tagged_big_files
    units = json.loads((output / "_SUMMARY.json").read_text())["counts"]["units"]
    markers = [json.loads(path.read_text()) for path in (output / "_done").glob("*.json")]
    per_file = {}
    for marker in markers:
        per_file.setdefault(Path(marker["unit"]["path"]).name, []).append(marker)
    assert {name: len(items) >= 8 for name, items in per_file.items()} == {"corpus.parquet": True, "corpus.jsonl": True}
    assert sum(marker["documents"] for marker in per_file["corpus.parquet"]) == DOCUMENTS
    assert sum(marker["documents"] for marker in per_file["corpus.jsonl"]) == DOCUMENTS
    assert units == len(markers) == summary["counts"]["units_run"] and summary["counts"]["documents"] == 2 * DOCUMENTS
    actors = summary["this_run"]["actors"]
    assert len(actors) == 2 and all(actor["units"] >= 2 and actor["documents"] > 0 for actor in actors.values()), actors
    assert max(len(items) for items in per_file.values()) * 2500 >= DOCUMENTS  # each unit holds at most a unit's worth

    rows = read_rows(output / "entities")
    by_doc = by_document(rows)
    differing = 0
    for index, expected in direct_entities.items():
        for doc_id in (f"p{index:05d}", f"j{index:05d}"):
            differing += assert_same_predictions(by_doc.pop(doc_id, []), expected, doc_id, THRESHOLD)
    total = sum(map(len, direct_entities.values()))
    assert not by_doc and total > DOCUMENTS / 4 and len(rows) == summary["counts"]["entities"]
    assert differing <= total / 1000, f"{differing} of {2 * total} entities differ on near ties"
    assert summary["counts"]["errors"] == 0 and not list(output.rglob(".tmp-*"))


def test_parsing_and_committing_never_run_inside_the_model_actors(local_ray, big_files, decisive_model, tmp_path, capsys):
    """With equal CPUs per read task and per actor, Ray Data would fuse the read stage into the actor pool."""
    from ray_jobs.tag import commit_unit, read_documents
    from ray_jobs.unit_pipeline import ActorStage, ReadStage, TaskStage, units_dataset
    from synth.work_units import UnitSizes, plan_inputs

    units = plan_inputs(str(big_files / "corpus.jsonl"), "auto", UnitSizes(documents=2500))
    units_dataset(units, ReadStage(read_documents, num_cpus=1), [ActorStage(UnitTagger, num_cpus=1), TaskStage(commit_unit, num_cpus=1)]).explain()
    optimized = capsys.readouterr().out.split("Physical Plan (Optimized)")[1]
    assert "ActorPoolMapOperator[MapBatches(UnitTagger)]" in optimized
    assert "TaskPoolMapOperator[MapBatches(_read_group)]" in optimized and "TaskPoolMapOperator[MapBatches(commit_unit)]" in optimized


def test_killed_part_way_through_one_file_and_rerun_writes_what_an_uninterrupted_run_writes(tagged_big_files, big_files, decisive_model, tmp_path):
    reference, _ = tagged_big_files
    jsonl = big_files / "corpus.jsonl"
    output = tmp_path / "interrupted"
    command = [sys.executable, "-m", "ray_jobs.tag", "--model", str(decisive_model), "--labels", ",".join(LABELS), "--threshold", str(THRESHOLD), "--input", str(jsonl),
               "--output", str(output), "batch_size=32", "units.documents=2500", "min_actors=1", "max_actors=1", "torch_threads=1"]
    process = subprocess.Popen(command, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not list((output / "_done").glob("*.json")):
        assert process.poll() is None, "the job ended before it could be killed"
        time.sleep(0.1)
    kill_process_tree(process.pid)  # the driver and the local Ray it started: GCS, raylet, actor, read and commit tasks
    process.wait()
    done_before = len(list((output / "_done").glob("*.json")))
    assert 1 <= done_before < 8, "the run should have been killed part-way"

    summary = run(tag_config(decisive_model, jsonl, output, min_actors=1, max_actors=1))
    assert summary["counts"]["units_skipped"] == done_before and summary["counts"]["units"] >= 8
    jsonl_rows = [row for row in read_rows(reference / "entities") if row["doc_id"].startswith("j")]
    assert read_rows(output / "entities") == jsonl_rows  # the same rows, none twice, none missing
    assert len(list((output / "entities").glob("*.parquet"))) == summary["counts"]["units"]
    assert not list(output.rglob(".tmp-*"))  # what the killed run left half-written is gone


PUBMED_XML = """<?xml version="1.0" encoding="utf-8"?>
<!DOCTYPE PubmedArticleSet PUBLIC "-//NLM//DTD PubMedArticle, 1st January 2025//EN" "pubmed_250101.dtd">
<PubmedArticleSet>
<PubmedArticle><MedlineCitation Status="MEDLINE" Owner="NLM"><PMID Version="1">9001</PMID><Article>
<ArticleTitle>Cisplatin <i>nephrotoxicity</i> in children.</ArticleTitle>
<Abstract><AbstractText Label="BACKGROUND">Cisplatin causes acute kidney injury and hearing loss.</AbstractText>
<AbstractText Label="CONCLUSIONS">Magnesium supplementation reduced nephrotoxicity.</AbstractText></Abstract></Article></MedlineCitation></PubmedArticle>
<PubmedArticle><MedlineCitation><PMID Version="1">9002</PMID><Article><ArticleTitle>Ménière's disease treated with betahistine — a cohort in Zürich.</ArticleTitle></Article></MedlineCitation></PubmedArticle>
<PubmedArticle><MedlineCitation><PMID Version="1">9003</PMID><Article><ArticleTitle>Broken <b>record</ArticleTitle></Article></MedlineCitation></PubmedArticle>
<DeleteCitation><PMID Version="1">8001</PMID><PMID Version="1">8002</PMID></DeleteCitation>
<PubmedArticle><MedlineCitation><PMID Version="1">9004</PMID><Article><ArticleTitle>Tamoxifen and β-catenin in breast cancer.</ArticleTitle>
<Abstract><AbstractText>Tamoxifen reduced tumour growth in MCF-7 cells; 5-fluorouracil did not.</AbstractText></Abstract></Article></MedlineCitation></PubmedArticle>
</PubmedArticleSet>
"""


class FailsOnAspirin(UnitTagger):
    """The real model, failing on any batch with a document about aspirin (as a model may fail on one document)."""

    def predict(self, texts: list[str]) -> list[list[dict]]:
        if any("Aspirin" in text for text in texts):
            raise RuntimeError("the model cannot take this document")
        return super().predict(texts)


def test_every_format_keeps_errors_exports_and_exact_offsets_then_a_rerun_skips(local_ray, decisive_model, data_dir, tmp_path):
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray's workers cannot import this test module
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "pubmed25n0001.xml.gz").write_bytes(gzip.compress(PUBMED_XML.encode("utf-8")))
    blocks = (data_dir / "ncbi-disease-pubtator/test.pubtator").read_text(encoding="utf-8").split("\n\n")
    (corpus / "ncbi_a.pubtator").write_text("\n\n".join(blocks[:6]) + "\n", encoding="utf-8")
    (corpus / "ncbi_b.pubtator").write_text("\n\n".join(blocks[6:12]) + "\n", encoding="utf-8")
    notes = '{"doc_id": "n1", "text": "Aspirin treats headache."}\n{"doc_id": "n2", "text": "   "}\nnot json\n'
    (corpus / "notes.jsonl").write_text(notes, encoding="utf-8")
    output = tmp_path / "out"
    config = tag_config(decisive_model, corpus, output, exports=["pubtator", "bioc"], units={"documents": 4}, min_actors=1, max_actors=1)
    summary = run(config, tagger=FailsOnAspirin)
    texts = {record.doc_id: record.text for path in corpus.iterdir() for record in read_documents(str(path), infer_format(str(path)))
             if isinstance(record, Document)}
    entities = read_rows(output / "entities")
    assert len(entities) > 20 and {entity["doc_id"] for entity in entities} >= {"9001", "9002", "9004"}
    for entity in entities:
        assert entity["text"] == texts[entity["doc_id"]][entity["start"]:entity["end"]]
    errors = read_rows(output / "errors")
    assert {(row["doc_id"], row["stage"], row["reason"]) for row in errors if row["doc_id"]} == {
        ("n2", "filter", "empty text"), ("n1", "tag", "RuntimeError")}  # n1 alone: the documents beside it in its unit are tagged
    reasons = {row["reason"]: row for row in errors}
    assert reasons["invalid JSON"]["location"] == f"byte {notes.index('not json')}" and reasons["invalid JSON"]["input"] == str(corpus / "notes.jsonl")
    assert reasons["malformed XML in <PubmedArticle>"]["detail"].startswith("malformed XML in <PubmedArticle>: mismatched tag")
    counts = summary["counts"]
    assert counts["units"] >= 5 and counts["documents"] == 3 + 12 and counts["deletions"] == 2
    assert counts["entities"] == len(entities) and counts["errors"] == len(errors) == 4
    assert summary["current"]["documents"] == 17 and summary["current"]["deleted"] == 2  # n2 is a version too, without entities
    assert len(list((output / "exports/pubtator").glob("*.pubtator"))) == len(list((output / "exports/bioc").glob("*.json"))) == counts["units"]
    bioc = [document for path in (output / "exports/bioc").glob("*.json") for document in json.loads(path.read_text())["documents"]]
    assert sorted(document["id"] for document in bioc) == sorted(set(texts) - {"n2"})  # every document the model saw, once

    again = run(config)
    assert again["counts"]["units_skipped"] == counts["units"] and again["this_run"]["documents"] == 0
    assert read_rows(output / "entities") == entities
    with pytest.raises(ValueError, match="cut differently"):  # other unit sizes would overlap the units already done
        run(config.model_copy(update={"units": config.units.model_copy(update={"documents": 3})}))


# ------------------------------------------------------------------------------------------------ PubMed updates
def article(pmid: str, title: str, abstract: str) -> str:
    return (f"<PubmedArticle><MedlineCitation><PMID Version=\"1\">{pmid}</PMID><Article><ArticleTitle>{title}</ArticleTitle>"
            f"<Abstract><AbstractText>{abstract}</AbstractText></Abstract></Article></MedlineCitation></PubmedArticle>\n")


def deletion(*pmids: str) -> str:
    return "<DeleteCitation>" + "".join(f"<PMID Version=\"1\">{pmid}</PMID>" for pmid in pmids) + "</DeleteCitation>\n"


def pubmed_file(path: Path, records: list[str]) -> None:
    xml = '<?xml version="1.0" encoding="utf-8"?>\n<PubmedArticleSet>\n' + "".join(records) + "</PubmedArticleSet>\n"
    path.write_bytes(gzip.compress(xml.encode("utf-8")))


@pytest.fixture(scope="module")
def pubmed_release(tmp_path_factory, short_texts):
    """A baseline of 24 articles and two update files, with the corpus's final state:
    update 1 revises 100-103, deletes 110-112 and adds 200-201; update 2 revises 101 again and 200, deletes 102 (revised
    in update 1) and 201 (added in update 1), adds 202 twice (the later version wins) and re-adds 111."""
    folder = tmp_path_factory.mktemp("pubmed")
    text = lambda index: (short_texts[index], short_texts[index + 1000])  # noqa: E731
    baseline = {str(100 + index): text(index) for index in range(24)}
    update1 = {pmid: text(2000 + int(pmid)) for pmid in ("100", "101", "102", "103", "200", "201")}
    update2 = {"101": text(3000), "200": text(3001), "202": text(3003), "111": text(3004)}
    (folder / "baseline").mkdir()
    (folder / "updates").mkdir()
    pubmed_file(folder / "baseline/pubmed25n0001.xml.gz", [article(pmid, *parts) for pmid, parts in baseline.items()])
    pubmed_file(folder / "updates/pubmed25n1275.xml.gz", [article(pmid, *update1[pmid]) for pmid in ("100", "101", "102", "103")]
                + [deletion("110", "111", "112")] + [article(pmid, *update1[pmid]) for pmid in ("200", "201")])
    pubmed_file(folder / "updates/pubmed25n1276.xml.gz", [article("202", *text(3002)), article("101", *update2["101"]), deletion("102", "201"),
                                                          article("200", *update2["200"]), article("202", *update2["202"]), article("111", *update2["111"])])
    final = {**baseline, **update1, **update2}
    for pmid in ("110", "112", "102", "201"):
        final.pop(pmid)
    pubmed_file(folder / "final_state.xml.gz", [article(pmid, *parts) for pmid, parts in sorted(final.items())])
    return folder, final


def test_pubmed_updates_leave_each_pmids_latest_version_in_current(local_ray, decisive_model, pubmed_release, tmp_path, monkeypatch):
    from gliner import GLiNER

    folder, final = pubmed_release
    settings = {"units": {"documents": 5}, "min_actors": 1, "max_actors": 1}
    documents = [record for record in read_documents(str(folder / "final_state.xml.gz"), "pubmed-xml")]
    assert sorted(document.doc_id for document in documents) == sorted(final)
    found = GLiNER.from_pretrained(decisive_model).inference([document.text for document in documents], LABELS, threshold=THRESHOLD)
    expected = [dict(entity, doc_id=document.doc_id) for document, entities in zip(documents, found) for entity in entities]
    assert len({row["doc_id"] for row in expected}) > len(final) / 2

    together = tmp_path / "together"  # baseline and both updates in one run; versions sorted out over the cluster
    monkeypatch.setattr("ray_jobs.tag.LOCAL_VERSION_ROWS", 0)
    summary = run(tag_config(decisive_model, str(folder / "**/pubmed25n*.xml.gz"), together, **settings))
    monkeypatch.undo()
    assert summary["counts"]["units"] >= 7
    assert_same_entities(read_rows(together / "current"), expected)
    current = summary["current"]
    assert current["documents"] == len(final) == 24 - 3 + 2  # 102, 110, 112 deleted (111 added again), 200 and 202 new
    # replaced: 100, 101, 103 and 111 (baseline); 101 and 200 (update 1); 202's first version (update 2)
    assert current["replaced"] == 7
    assert current["deleted"] == 4  # latest record a deletion: 110, 112 (update 1), 102, 201 (update 2)
    assert current["entities"] == len(read_rows(together / "current"))

    stepwise = tmp_path / "stepwise"  # an update run added to an earlier output; versions sorted out on the driver
    first = run(tag_config(decisive_model, str(folder / "**/pubmed25n000*.xml.gz"), stepwise, **settings))
    assert first["current"]["documents"] == 24 and first["current"]["replaced"] == 0
    second = run(tag_config(decisive_model, str(folder / "updates"), stepwise, **settings))
    assert 0 < second["current"]["units_rewritten"] < second["current"]["units"]  # baseline units no update touches are kept
    after = run(tag_config(decisive_model, str(folder / "updates/pubmed25n1276.xml.gz"), stepwise, **settings))
    assert_same_entities(read_rows(stepwise / "current"), expected)
    assert {key: after["current"][key] for key in ("documents", "replaced", "deleted")} == {
        key: current[key] for key in ("documents", "replaced", "deleted")}
    assert after["current"]["units_rewritten"] == 0 and after["counts"]["units_skipped"] == after["counts"]["units"]
