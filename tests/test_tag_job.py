"""The tag job on a real local Ray: PubMed XML with odd records and PubTator in, entities Parquet out; errors kept;
a run killed part-way and resumed writes exactly what an uninterrupted run writes."""
import gzip
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from synth.documents import Document, infer_format, read_documents

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]

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


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, data_dir):
    folder = tmp_path_factory.mktemp("corpus")
    (folder / "pubmed25n0001.xml.gz").write_bytes(gzip.compress(PUBMED_XML.encode("utf-8")))
    blocks = (data_dir / "ncbi-disease-pubtator/test.pubtator").read_text(encoding="utf-8").split("\n\n")
    (folder / "ncbi_a.pubtator").write_text("\n\n".join(blocks[:6]) + "\n", encoding="utf-8")
    (folder / "ncbi_b.pubtator").write_text("\n\n".join(blocks[6:12]) + "\n", encoding="utf-8")
    (folder / "notes.jsonl").write_text('{"doc_id": "n1", "text": "Aspirin treats headache."}\n{"doc_id": "n2", "text": "   "}\nnot json\n', encoding="utf-8")
    return folder


def run_tag(model_dir, corpus, output, *extra, background=False):
    command = [sys.executable, "-m", "ray_jobs.tag", "--model", str(model_dir), "--labels", "disease,chemical,gene",
               "--input", str(corpus), "--output", str(output), "--threshold", "0.3", "num_actors=1", "torch_threads=1", *extra]
    if background:
        return subprocess.Popen(command, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout


def kill_process_tree(pid: int) -> None:
    import psutil

    root = psutil.Process(pid)
    processes = [root] + root.children(recursive=True)
    for process in processes:
        try:
            process.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(processes, timeout=30)


def read_rows(output: Path, kind: str) -> list[dict]:
    rows = []
    for path in sorted((output / kind).glob("*.parquet")):
        rows += pq.read_table(path).to_pylist()
    return sorted(rows, key=lambda row: tuple(str(value) for value in row.values()))


def test_tags_every_format_keeps_errors_and_offsets_are_exact(tiny_uni_dir, corpus, tmp_path):
    output = tmp_path / "out"
    stdout = run_tag(tiny_uni_dir, corpus, output, "exports=[pubtator,bioc]")
    assert "tagged" in stdout
    texts = {}
    for path in corpus.iterdir():
        for record in read_documents(str(path), infer_format(str(path))):
            if isinstance(record, Document):
                texts[record.doc_id] = record.text
    entities = read_rows(output, "entities")
    assert len(entities) > 20
    for entity in entities:
        assert entity["text"] == texts[entity["doc_id"]][entity["start"] : entity["end"]]
    assert {entity["doc_id"] for entity in entities} >= {"9001", "9002", "9004"}
    reasons = [(row["doc_id"], row["reason"]) for row in read_rows(output, "errors")]
    assert ("8001", "deleted citation (DeleteCitation)") in reasons and ("8002", "deleted citation (DeleteCitation)") in reasons
    assert any("malformed XML" in reason for _, reason in reasons)
    assert ("n2", "empty text") in reasons and any("invalid JSON" in reason for _, reason in reasons)
    summary = __import__("json").loads((output / "_SUMMARY.json").read_text())
    assert summary["shards"] == 4 and summary["documents"] == 3 + 12 + 1
    assert summary["entities"] == len(entities) and summary["errors"] == len(reasons)
    assert len(list((output / "exports/pubtator").glob("*.pubtator"))) == 4
    assert len(list((output / "exports/bioc").glob("*.json"))) == 4
    again = run_tag(tiny_uni_dir, corpus, output)
    assert "(4 already done)" in again  # a rerun skips finished shards


def test_killed_run_resumed_writes_what_an_uninterrupted_run_writes(tiny_uni_dir, corpus, tmp_path):
    reference = tmp_path / "reference"
    run_tag(tiny_uni_dir, corpus, reference)
    interrupted = tmp_path / "interrupted"
    process = run_tag(tiny_uni_dir, corpus, interrupted, background=True)
    deadline = time.time() + 300
    while time.time() < deadline and len(list((interrupted / "_done").glob("*.json"))) < 1:
        time.sleep(0.2)
    kill_process_tree(process.pid)  # the driver and the local Ray it started (GCS, raylet, the tagging actor)
    process.wait()
    done_before = len(list((interrupted / "_done").glob("*.json")))
    assert 1 <= done_before < 4, "the run should have been killed part-way"
    stdout = run_tag(tiny_uni_dir, corpus, interrupted)
    assert f"({done_before} already done)" in stdout
    assert read_rows(interrupted, "entities") == read_rows(reference, "entities")
    assert read_rows(interrupted, "errors") == read_rows(reference, "errors")
    assert not list(interrupted.rglob(".tmp-*"))  # a killed shard's half-written files are cleaned when it is redone
