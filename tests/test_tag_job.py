"""The tag job on a real local Ray (2 CPUs): single big files cut into work units and tagged by two actors, with the
entities the library's own `inference` finds; a run killed part-way through a file and rerun; every input format with
its odd records; PubMed baseline and update files folded into OUTPUT/current."""
import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import kill_process_tree
from ray_jobs.tag import TagConfig, UnitTagger, run

sys.path.insert(0, str(Path(__file__).parent / "parity"))
from near_ties import assert_same_predictions  # noqa: E402
from corpus.documents import Document, read_documents
from corpus.work_units import infer_format

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


def read_rows(folder: Path | str) -> list[dict]:
    """The rows of a folder's Parquet files, sorted; the folder a path or an s3:// URL."""
    filesystem, path = fsspec.core.url_to_fs(str(folder), use_listings_cache=False)
    rows = [row for name in sorted(filesystem.glob(f"{path}/*.parquet")) for row in pq.read_table(name, filesystem=filesystem).to_pylist()]
    return sorted(rows, key=lambda row: tuple(str(value) for value in row.values()))


def upload(local: Path, url: str) -> str:
    """A local file or folder copied to object storage; returns its URL."""
    filesystem, path = fsspec.core.url_to_fs(url)
    filesystem.put(str(local), path, recursive=local.is_dir())
    return url


def by_document(rows: list[dict]) -> dict[str, list[dict]]:
    documents: dict[str, list[dict]] = {}
    for row in sorted(rows, key=lambda row: (row["doc_id"], row["start"], -row["score"])):
        documents.setdefault(row["doc_id"], []).append(row)
    return documents


def assert_same_entities(rows: list[dict], expected: list[dict], threshold: float = THRESHOLD) -> None:
    """The same entities per document, up to floating-point noise between batches of other documents."""
    found, wanted = by_document(rows), by_document(expected)
    assert found.keys() == wanted.keys()
    differing = sum(assert_same_predictions(found[doc_id], wanted[doc_id], doc_id, threshold) for doc_id in wanted)
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
    from ray_jobs.runtime.unit_pipeline import ActorStage, ReadStage, TaskStage, units_dataset
    from corpus.work_units import UnitSizes, plan_inputs

    units = plan_inputs(str(big_files / "corpus.jsonl"), "auto", UnitSizes(documents=2500))
    units_dataset(units, ReadStage(read_documents, num_cpus=1), [ActorStage(UnitTagger, num_cpus=1), TaskStage(commit_unit, num_cpus=1)]).explain()
    optimized = capsys.readouterr().out.split("Physical Plan (Optimized)")[1]
    assert "ActorPoolMapOperator[MapBatches(UnitTagger)]" in optimized
    assert "TaskPoolMapOperator[MapBatches(_read_group)]" in optimized and "TaskPoolMapOperator[MapBatches(commit_unit)]" in optimized


def test_killed_part_way_through_one_file_and_rerun_writes_what_an_uninterrupted_run_writes(tagged_big_files, big_files, decisive_model,
                                                                                          s3_server, capsys):
    """The job's driver and its local Ray killed after a few units, with the input and output on S3 (on a local disk:
    tests/test_cluster_submit.py and benchmarks/faults.py); the rerun writes the uninterrupted run's rows, none twice,
    no temporaries; a rerun with other labels is refused, naming what differs."""
    from ray_jobs.tag import main

    reference, _ = tagged_big_files
    jsonl = upload(big_files / "corpus.jsonl", f"{s3_server.new_bucket()}/corpus.jsonl")
    output = jsonl.rsplit("/", 1)[0] + "/interrupted"
    filesystem, output_path = fsspec.core.url_to_fs(output, use_listings_cache=False)
    markers = lambda: filesystem.glob(f"{output_path}/_done/*.json")  # noqa: E731
    flags = ["--model", str(decisive_model), "--threshold", str(THRESHOLD), "--input", jsonl, "--output", output, "batch_size=32",
             "units.documents=2500", "min_actors=1", "max_actors=1", "torch_threads=1"]
    process = subprocess.Popen([sys.executable, "-m", "ray_jobs.tag", "--labels", ",".join(LABELS), *flags], cwd=REPO, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not markers():
        assert process.poll() is None, "the job ended before it could be killed"
        time.sleep(0.1)
    kill_process_tree(process.pid)  # the driver and the local Ray it started: GCS, raylet, actor, read and commit tasks
    process.wait()
    done_before = len(markers())
    assert 1 <= done_before < 8, "the run should have been killed part-way"

    summary = run(tag_config(decisive_model, jsonl, output, min_actors=1, max_actors=1))
    assert summary["counts"]["units_skipped"] == done_before and summary["counts"]["units"] >= 8
    progress = json.loads(filesystem.cat(f"{output_path}/_PROGRESS.json"))  # this run's: the units it had left
    assert (progress["done"], progress["total"], progress["finished"]) == (summary["counts"]["units_run"],) * 2 + (True,)
    assert progress["figures"]["documents"] == summary["this_run"]["documents"]
    jsonl_rows = [row for row in read_rows(reference / "entities") if row["doc_id"].startswith("j")]
    assert read_rows(f"{output}/entities") == jsonl_rows  # the same rows, none twice, none missing
    assert len(filesystem.glob(f"{output_path}/entities/*.parquet")) == summary["counts"]["units"]
    assert not [path for path in filesystem.find(output_path) if "/.tmp-" in path]  # what the killed run left half-written is gone

    assert main(["--labels", "disease", *flags]) == 2
    assert 'was made with other settings (labels: ["disease", "chemical"] before, ["disease"] now)' in capsys.readouterr().err
    assert main(["--labels", "disease,<<SEP>> marker", *flags]) == 2  # refused by the driver, from the model's config alone
    assert "error: labels: label '<<SEP>> marker' contains the reserved prompt token '<<SEP>>'" in capsys.readouterr().err


CUES = {"d0100": "DEVICE-FAULT", "d0850": "POISON", "d1350": "BROKEN-DEVICE"}


def faulty_tagger(marks: Path) -> type:
    """The real model, meeting the faults of a real cluster on cue (`CUES`): a "POISON" document kills its worker as
    the kernel's OOM killer does, every time; "DEVICE-FAULT" makes the first actor that meets it hit a sticky CUDA
    error; "BROKEN-DEVICE" breaks the first actor that meets it for good, with an error that names no device (the
    probe text then fails too). `marks` records what happened, across the actors' processes."""
    def first_time(name: str) -> bool:
        try:
            os.close(os.open(marks / name, os.O_CREAT | os.O_EXCL))
            return True
        except FileExistsError:
            return False

    class FaultyTagger(UnitTagger):
        broken = False

        def predict(self, batches: list, doc_ids: list[str]) -> dict:
            cues = {CUES.get(doc_ids[index]) for batch in batches for index in batch.chunk_indices}
            if "POISON" in cues:
                with open(marks / "poison_attempts", "a") as handle:
                    handle.write("attempt\n")
                os.kill(os.getpid(), signal.SIGKILL)
            if "DEVICE-FAULT" in cues and first_time("device_fault"):
                raise RuntimeError("CUDA error: an illegal memory access was encountered")
            if "BROKEN-DEVICE" in cues and first_time("broken_device"):
                self.broken = True
            if self.broken:
                raise RuntimeError("the kernel cannot be launched")
            return super().predict(batches, doc_ids)

    return FaultyTagger


def test_faults_on_s3_are_retried_or_fail_their_unit_and_a_rerun_completes_the_same_rows(local_ray, decisive_model, short_texts, s3_server, tmp_path):
    """Tag two JSONL files on S3 (moto behind a fault proxy) into S3, against a clean run of the same input:
    - connection resets mid-file and throttled writes are retried and leave no trace;
    - a sticky CUDA error, and a broken device the probe text reveals, end their actor: Ray replaces it and the unit
      is tagged again, with no error rows;
    - a poison unit is tried retries + 1 times, then fails; a read that keeps failing fails its unit too;
    - the job finishes every other unit, exits 1 naming both failed units, and a rerun does only those two:
      the entities and errors are then exactly the clean run's."""
    from ray import cloudpickle

    from ray_jobs.runtime.job_command import JobFailed

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    texts = list(short_texts[:2000])
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, part in (("a.jsonl", range(1500)), ("b.jsonl", range(1500, 2000))):
        (corpus / name).write_text("".join(json.dumps({"doc_id": f"d{index:04d}", "text": texts[index]}) + "\n" for index in part))
    bucket = s3_server.new_bucket()
    inputs = upload(corpus, f"{bucket}/corpus")
    settings = {"units": {"documents": 250, "retries": 1}, "min_actors": 1, "max_actors": 1}
    clean = run(tag_config(decisive_model, inputs, f"{bucket}/clean", **settings))
    units = clean["counts"]["units"]
    assert clean["counts"]["documents"] == 2000 and units >= 6

    proxy, marks = s3_server.proxy, tmp_path / "marks"
    marks.mkdir()
    proxy.inject("reset", r"GET /[^ ]*/corpus/a\.jsonl", 2)  # absorbed by the S3 client's own retries
    proxy.inject("throttle", r"PUT /[^ ]*/faulty/entities/", 3)
    proxy.inject("reset", r"GET /[^ ]*/corpus/b\.jsonl .*range: bytes=[1-9]", 10_000)  # b's second unit, for good
    faulty = tag_config(decisive_model, inputs, f"{bucket}/faulty", **settings)
    try:
        with pytest.raises(JobFailed, match=rf"2 of {units} unit\(s\) failed and were not committed") as failure:
            run(faulty, tagger=faulty_tagger(marks))
    finally:
        proxy.heal()
    injected = " ".join(proxy.injected)
    assert "throttle: PUT" in injected and injected.count("reset: GET") > 2
    assert (marks / "poison_attempts").read_text().count("attempt") == 2 and (marks / "device_fault").exists() and (marks / "broken_device").exists()
    summary = json.loads(fsspec.open(f"{bucket}/faulty/_SUMMARY.json").open().read())
    assert summary["status"] == "incomplete" and summary["counts"]["units_failed"] == 2
    failed = {item["unit_id"]: item["reason"] for item in summary["failed_units"]}
    assert sum("poison unit" in reason for reason in failed.values()) == 1 and all(unit_id in str(failure.value) for unit_id in failed)
    assert sum(unit_id.startswith("b.jsonl") and "reading" in reason and "(after 5 attempts)" in reason for unit_id, reason in failed.items()) == 1
    assert summary["counts"]["errors"] == 0  # no device fault became an error row

    again = run(faulty)
    assert again["counts"]["units_run"] == 2 and again["counts"]["units_skipped"] == units - 2 and again["status"] == "complete"
    assert read_rows(f"{bucket}/faulty/entities") == read_rows(f"{bucket}/clean/entities")  # none lost, none twice
    assert read_rows(f"{bucket}/faulty/errors") == read_rows(f"{bucket}/clean/errors") == []
    keys = s3_server.keys(f"{bucket}/faulty")
    assert not [key for key in keys if ".tmp-" in key or "/_attempts/" in key]


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
    """The real model, failing on any batch with the document about aspirin (as a model may fail on one document)."""

    def predict(self, batches: list, doc_ids: list[str]) -> dict:
        if any(doc_ids[index] == "n1" for batch in batches for index in batch.chunk_indices):
            raise RuntimeError("the model cannot take this document")
        return super().predict(batches, doc_ids)


def test_every_format_keeps_errors_exports_and_exact_offsets_then_a_rerun_skips(local_ray, decisive_model, data_dir, tmp_path):
    from ray import cloudpickle

    from gliner import GLiNER

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
    # Labels with a description: the model reads "disease or syndrome", the entities say "disease".
    described = {"disease": "disease or syndrome", "chemical": "chemical"}
    config = tag_config(decisive_model, corpus, output, exports=["pubtator", "bioc"], units={"documents": 4}, min_actors=1, max_actors=1,
                        labels=described)
    summary = run(config, tagger=FailsOnAspirin)
    texts = {record.doc_id: record.text for path in corpus.iterdir() for record in read_documents(str(path), infer_format(str(path)))
             if isinstance(record, Document)}
    entities = read_rows(output / "entities")
    assert len(entities) > 20 and {entity["doc_id"] for entity in entities} >= {"9001", "9002", "9004"}
    for entity in entities:
        assert entity["text"] == texts[entity["doc_id"]][entity["start"]:entity["end"]]
    tagged = sorted(set(texts) - {"n1", "n2"})  # n1 failed on purpose, n2 is empty
    direct = GLiNER.from_pretrained(decisive_model).inference([texts[doc_id] for doc_id in tagged], described, threshold=THRESHOLD)
    assert_same_entities(entities, [dict(entity, doc_id=doc_id) for doc_id, found in zip(tagged, direct) for entity in found])
    assert "disease" in {entity["label"] for entity in entities} <= set(described)
    assert json.loads((output / "_SETTINGS.json").read_text())["labels"] == described
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


def test_pubmed_updates_leave_each_pmids_latest_version_in_current(local_ray, decisive_model, pubmed_release, tmp_path, monkeypatch, s3_server):
    from gliner import GLiNER

    folder, final = pubmed_release
    settings = {"units": {"documents": 5}, "min_actors": 1, "max_actors": 1}
    documents = [record for record in read_documents(str(folder / "final_state.xml.gz"), "pubmed-xml")]
    assert sorted(document.doc_id for document in documents) == sorted(final)
    found = GLiNER.from_pretrained(decisive_model).inference([document.text for document in documents], LABELS, threshold=THRESHOLD)
    expected = [dict(entity, doc_id=document.doc_id) for document, entities in zip(documents, found) for entity in entities]
    assert len({row["doc_id"] for row in expected}) > len(final) / 2

    # Baseline and both updates in one run, read from and written to S3; versions sorted out over the cluster.
    release = upload(folder, f"{s3_server.new_bucket()}/pubmed")
    together = release.rsplit("/", 1)[0] + "/together"
    monkeypatch.setattr("ray_jobs.tag.LOCAL_VERSION_ROWS", 0)
    summary = run(tag_config(decisive_model, f"{release}/**/pubmed25n*.xml.gz", together, **settings))
    monkeypatch.undo()
    assert summary["counts"]["units"] >= 7
    assert_same_entities(read_rows(f"{together}/current"), expected)
    current = summary["current"]
    assert current["documents"] == len(final) == 24 - 3 + 2  # 102, 110, 112 deleted (111 added again), 200 and 202 new
    # replaced: 100, 101, 103 and 111 (baseline); 101 and 200 (update 1); 202's first version (update 2)
    assert current["replaced"] == 7
    assert current["deleted"] == 4  # latest record a deletion: 110, 112 (update 1), 102, 201 (update 2)
    assert current["entities"] == len(read_rows(f"{together}/current"))

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


def test_pubmed_xml_offsets_index_pubtators_text_of_the_same_abstracts(local_ray, decisive_model, data_dir, tmp_path):
    """The NCBI-disease test abstracts written as PubMed XML and tagged: every entity's offsets index PubTator's text of
    its PMID, where 15 abstracts have runs of spaces (e.g. "BACKGROUND/AIMS  The") that a reader collapsing
    whitespace would shift every later offset past."""
    import re
    from xml.sax.saxutils import escape

    from gliner.evaluation.pubtator import read_pubtator

    abstracts = read_pubtator(data_dir / "ncbi-disease-pubtator/test.pubtator")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for index, half in enumerate((abstracts[:50], abstracts[50:])):
        records = [article(document.pmid, escape(document.title), escape(document.abstract)) for document in half]
        xml = '<?xml version="1.0" encoding="utf-8"?>\n<PubmedArticleSet>\n' + "".join(records) + "</PubmedArticleSet>\n"
        (corpus / f"pubmed25n000{index + 1}.xml").write_text(xml, encoding="utf-8")
    pubtator_texts = {document.pmid: document.text for document in abstracts}
    read = {record.doc_id: record.text for path in corpus.iterdir() for record in read_documents(str(path), "pubmed-xml")}
    assert read == {pmid: text.rstrip() for pmid, text in pubtator_texts.items()}  # PubTator's abstracts end with a space

    summary = run(tag_config(decisive_model, corpus, tmp_path / "out", units={"documents": 25}, min_actors=1, max_actors=1))
    counts = summary["counts"]
    assert counts["documents"] == len(abstracts) == 100 and counts["errors"] == 0 and counts["units"] >= 4
    entities = read_rows(tmp_path / "out/entities")
    assert len(entities) == counts["entities"] > 50
    for entity in entities:
        assert entity["text"] == pubtator_texts[entity["doc_id"]][entity["start"]:entity["end"]], entity
    runs = {pmid: match.end() for pmid, text in pubtator_texts.items() if (match := re.search(r"\s{2,}", text.rstrip()))}
    assert len(runs) == 15
    assert any(entity["doc_id"] in runs and entity["start"] >= runs[entity["doc_id"]] for entity in entities)


def test_a_bi_encoder_tags_with_1200_labels_encoded_once_or_read_from_a_file_and_per_document_label_sets(local_ray, trained_tiny_bi_dir,
                                                                                                          short_texts, tmp_path):
    """The label vectors are encoded by one task and shared with the actors, or read from a file made by
    `python -m gliner.label_vectors` (refused when it lacks a label); either way the entities are the library's.
    Then documents that bring their own labels (a list, or descriptions) in a column are tagged with those, the
    others with the job's, bad ones become error rows: as the library tags each text with its own labels."""
    from gliner import GLiNER
    from gliner.label_vectors import main as make_vectors
    from ray_jobs.runtime.job_command import BadInput

    labels = ["disease", "chemical", "gene"] + [f"entity type {index}" for index in range(1197)]
    corpus = tmp_path / "texts.jsonl"
    corpus.write_text("".join(json.dumps({"doc_id": str(index), "text": text}) + "\n" for index, text in enumerate(short_texts[:40])))
    (tmp_path / "labels.txt").write_text("\n".join(labels) + "\n")
    model, threshold = trained_tiny_bi_dir, 0.1
    assert make_vectors(["--model", str(model), "--labels-file", str(tmp_path / "labels.txt"), "--output", str(tmp_path / "v.safetensors")]) == 0
    direct = GLiNER.from_pretrained(model).inference(short_texts[:40], labels, threshold=threshold, batch_size=32)
    expected = [dict(entity, doc_id=str(index)) for index, found in enumerate(direct) for entity in found]
    assert len(expected) >= 10
    changes = {"labels": labels, "threshold": threshold, "min_actors": 1, "max_actors": 1, "units": {"documents": 20}}
    for name, vectors in (("encoded", None), ("from_file", str(tmp_path / "v.safetensors"))):
        summary = run(tag_config(model, corpus, tmp_path / name, label_vectors=vectors, **changes))
        assert summary["counts"]["documents"] == 40
        assert_same_entities(read_rows(tmp_path / name / "entities"), expected, threshold)
    with pytest.raises(BadInput, match="has no vector for"):
        run(tag_config(model, corpus, tmp_path / "missing", label_vectors=str(tmp_path / "v.safetensors"), **{**changes, "labels": labels + ["virus"]}))

    own = [None, ["disease", "gene", "entity type 7"], {"disease": "disease or syndrome", "chemical": "chemical"}, ["chemical", "virus"]]
    records = [{"doc_id": str(index), "text": text, **({"types": own[index % 4]} if own[index % 4] else {})} for index, text in enumerate(short_texts[:40])]
    records += [{"doc_id": "not-a-list", "text": short_texts[0], "types": "disease"}, {"doc_id": "none", "text": short_texts[1], "types": []}]
    (tmp_path / "own.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
    summary = run(tag_config(model, tmp_path / "own.jsonl", tmp_path / "own", labels_column="types", label_vectors=str(tmp_path / "v.safetensors"),
                             **changes))
    per_text = [record.get("types", labels) for record in records[:40]]
    direct = GLiNER.from_pretrained(model).inference(short_texts[:40], per_text, threshold=threshold, batch_size=32)
    expected = [dict(entity, doc_id=str(index)) for index, found in enumerate(direct) for entity in found]
    assert "virus" in {entity["label"] for entity in expected} and len(expected) >= 10  # "virus": only documents' own labels have it
    assert_same_entities(read_rows(tmp_path / "own" / "entities"), expected, threshold)
    assert summary["counts"]["documents"] == 40
    assert {(row["doc_id"], row["reason"]) for row in read_rows(tmp_path / "own" / "errors")} == {("not-a-list", "labels"), ("none", "labels")}
    assert json.loads((tmp_path / "own" / "_SETTINGS.json").read_text())["labels_column"] == "types"
