"""The curate job on a real local Ray: a JSONL and a PubTator source with planted duplicates (inside and across
sources), malformed records and low-quality texts; every passage ends up exactly once in documents or rejected."""
import json
import random
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ray_jobs.curate import CurateConfig, parse_args, run
from ray_jobs.runtime.job_config import load_config
from corpus.contracts import DOCUMENTS_SCHEMA
from synth.source_balance import balance_cutoffs

REPO = Path(__file__).resolve().parents[1]
FUNCTION_WORDS = ["the", "of", "and", "in", "with", "was", "to", "for", "by", "on"]


def sentences(rng: random.Random, count: int) -> list[str]:
    """English-like sentences: pseudo-words with function words, 12-16 words each (they pass the paper's filters)."""
    result = []
    for _ in range(count):
        words = [rng.choice(FUNCTION_WORDS) if index % 3 == 2 else "".join(rng.choices("abcdefghiklmnoprstuvy", k=rng.randint(3, 9)))
                 for index in range(rng.randint(12, 16))]
        result.append(" ".join(words).capitalize() + ".")
    return result


def substitute(text: str, rng: random.Random, count: int) -> str:
    words = text.split()
    for index in rng.sample(range(1, len(words) - 1), count):
        words[index] = "zqx" + words[index]
    return " ".join(words)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """trials.jsonl: t00-t29 good; t30 = t00 with "!" for "." (exact, same length: t00 kept by id); t31 = t01 + a
    sentence + one word changed (near; longer, so t31 kept); t96 two passages; t97 in capitals; t99 two sentences;
    a line that is not JSON; t98 without text.
    abstracts.pubtator: a00-a19 good; a20 = t02 as title + abstract (exact across sources, same length: a20 kept by
    id); a21 = t03 less one sentence (near across sources; t03 kept); one record without a title line."""
    rng = random.Random(5)
    folder = tmp_path_factory.mktemp("curate_corpus")
    trials = {f"t{index:02d}": " ".join(sentences(rng, 8)) for index in range(30)}
    trials["t30"] = trials["t00"].replace(".", "!")
    trials["t31"] = substitute(trials["t01"] + " " + sentences(rng, 1)[0], rng, 1)
    trials["t96"] = " ".join(sentences(rng, 20))
    trials["t97"] = " ".join(sentences(rng, 8)).upper()
    trials["t99"] = " ".join(sentences(rng, 2))
    lines = [json.dumps({"doc_id": doc_id, "text": text}) for doc_id, text in trials.items()]
    lines[5:5] = ["{not json", json.dumps({"doc_id": "t98"})]
    (folder / "trials.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")

    abstracts = {f"a{index:02d}": sentences(rng, 8) for index in range(20)}
    t02 = trials["t02"].split(". ")
    abstracts["a20"] = [t02[0] + ".", ". ".join(t02[1:])]
    t03 = [sentence if sentence.endswith(".") else sentence + "." for sentence in trials["t03"].split(". ")]
    abstracts["a21"] = t03[:4] + t03[5:]
    blocks = [f"{pmid}|t|{parts[0]}\n{pmid}|a|{' '.join(parts[1:])}" for pmid, parts in abstracts.items()]
    blocks.insert(3, "a77|a|An abstract line without its title line.")
    (folder / "abstracts.pubtator").write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    return folder, trials, abstracts


def make_config(folder: Path, output: Path, **changes) -> CurateConfig:
    values = {
        "inputs": [{"path": str(folder / "trials.jsonl"), "source": "trials"},
                   {"path": str(folder / "abstracts.pubtator"), "source": "abstracts", "format": "pubtator"}],
        "output": str(output), "passages": {"max_words": 150}, "dedup": {"partitions": 2},
    }
    return CurateConfig.model_validate(values | changes)


def read_rows(folder: Path) -> list[dict]:
    return [row for path in sorted(folder.glob("*.parquet")) for row in pq.read_table(path).to_pylist()]


@pytest.fixture(scope="module")
def curated(corpus, tmp_path_factory):
    import ray

    folder, _, _ = corpus
    output = tmp_path_factory.mktemp("curated") / "out"
    summary = run(make_config(folder, output))
    yield output, summary
    ray.shutdown()


@pytest.mark.ray
def test_every_passage_is_kept_or_rejected_once_with_a_reason(curated):
    output, _ = curated
    documents, rejected = read_rows(output / "documents"), read_rows(output / "rejected")
    assert pq.read_schema(next((output / "documents").glob("*.parquet"))).remove_metadata() == DOCUMENTS_SCHEMA
    passage_ids = [row["doc_id"] for row in documents] + [row["doc_id"] for row in rejected if row["stage"] != "read"]
    expected = {f"t{index:02d}#p0" for index in list(range(32)) + [97, 99]} | {"t96#p0", "t96#p1"} | {f"a{index:02d}#p0" for index in range(22)}
    assert sorted(passage_ids) == sorted(expected)  # each exactly once
    assert all(row["reason"] for row in rejected)


@pytest.mark.ray
def test_read_errors_and_quality_failures_are_rejected_with_reasons(curated):
    output, _ = curated
    rows = read_rows(output / "rejected")
    rejected = {(row["stage"], row["doc_id"]): row for row in rows}
    reads = [row for row in rows if row["stage"] == "read"]
    assert sorted(row["source"] for row in reads) == ["abstracts", "trials", "trials"]
    assert sorted(row["reason"] for row in reads) == ["'text' is missing or not a string", "expected a 'PMID|t|title' line", "invalid JSON"]
    assert any(row["doc_id"] == "t98" and "'text'" in row["reason"] for row in reads)
    assert rejected[("quality", "t99#p0")]["reason"] == "sentence_count < 6"
    assert rejected[("quality", "t97#p0")]["reason"] == "capitalisation_ratio > 0.2"


@pytest.mark.ray
def test_exact_and_near_duplicates_inside_and_across_sources(curated):
    output, summary = curated
    rejected = read_rows(output / "rejected")
    duplicates = {row["doc_id"]: (row["stage"], row["detail"]) for row in rejected if "duplicate" in row["stage"]}
    assert duplicates == {
        "t30#p0": ("exact_duplicate", "kept t00#p0"),
        "t02#p0": ("exact_duplicate", "kept a20#p0"),
        "t01#p0": ("near_duplicate", "kept t31#p0"),
        "a21#p0": ("near_duplicate", "kept t03#p0"),
    }
    assert summary["dedup"]["exact_duplicates"] == 2 and summary["dedup"]["near_duplicates"] == 2
    assert summary["dedup"]["verified_pairs"] >= 2 and summary["dedup"]["candidate_pairs"] >= 2


@pytest.mark.ray
def test_sources_are_balanced_to_the_smallest(curated):
    output, summary = curated
    documents = read_rows(output / "documents")
    # after duplicates: trials 34 - 3 = 31 passages, abstracts 22 - 1 = 21
    assert Counter(row["source"] for row in documents) == {"trials": 21, "abstracts": 21}
    assert len({row["doc_id"] for row in documents}) == 42
    balance_drops = [row for row in read_rows(output / "rejected") if row["stage"] == "balance"]
    assert len(balance_drops) == 10 and {row["source"] for row in balance_drops} == {"trials"}
    first = next(row for row in documents if row["doc_id"] == "a20#p0")
    meta = json.loads(first["meta"])
    assert meta["document_id"] == "a20" and meta["passage_index"] == 0 and meta["input"].endswith("abstracts.pubtator")
    assert summary["balance"]["target_per_source"] == 21


@pytest.mark.ray
def test_summary_counts_per_stage_and_source(curated):
    output, summary = curated
    assert json.loads((output / "_SUMMARY.json").read_text()) == summary
    trials, abstracts = summary["per_source"]["trials"], summary["per_source"]["abstracts"]
    assert trials["documents"] == 35 and trials["read_errors"] == 2
    assert trials["passages"] == 36 and trials["passed_quality"] == 34 and trials["rejected_quality"] == 2
    assert trials["rejected_exact_duplicate"] == 2 and trials["rejected_near_duplicate"] == 1
    assert trials["rejected_balance"] == 10 and trials["kept"] == 21
    assert abstracts["documents"] == 22 and abstracts["read_errors"] == 1 and abstracts["passed_quality"] == 22
    assert abstracts["rejected_near_duplicate"] == 1 and abstracts["kept"] == 21
    assert summary["rejected_by_reason"]["quality: sentence_count < 6"] == 1
    assert summary["rejected_by_stage"] == {"read": 3, "quality": 2, "exact_duplicate": 2, "near_duplicate": 2, "balance": 10}
    assert set(summary["timings"]) >= {"read_filter", "exact_dedup", "near_dedup", "balance_write"}
    assert not list(output.glob(".staging-*"))


@pytest.mark.ray
def test_rerun_on_a_complete_output_skips(corpus, curated):
    folder, _, _ = corpus
    output, summary = curated
    before = {path: path.stat().st_mtime_ns for path in output.rglob("*")}
    again = run(make_config(folder, output))
    assert again["skipped"] is True and again["totals"] == summary["totals"]
    assert {path: path.stat().st_mtime_ns for path in output.rglob("*")} == before


@pytest.mark.ray
def test_curate_from_and_to_s3_writes_the_local_runs_rows_and_refuses_other_filters(corpus, curated, s3_server):
    """Inputs and output on S3 (moto): the same documents and rejected rows as the local run; a rerun with another
    quality filter is refused, naming it, instead of keeping the output made with the old one."""
    import fsspec

    from ray_jobs.runtime.job_command import BadInput

    folder, _, _ = corpus
    local, summary = curated
    bucket = s3_server.new_bucket()
    filesystem, _ = fsspec.core.url_to_fs(bucket, use_listings_cache=False)
    filesystem.put(str(folder), f"{bucket}/corpus", recursive=True)
    config = make_config(Path("unused"), Path("unused"))
    inputs = [spec.model_copy(update={"path": f"{bucket}/corpus/{Path(spec.path).name}"}) for spec in config.inputs]
    remote = config.model_copy(update={"inputs": inputs, "output": f"{bucket}/out"})
    assert run(remote)["totals"] == summary["totals"]
    for folder_name in ("documents", "rejected"):
        rows = [row for path in sorted(filesystem.glob(f"{bucket}/out/{folder_name}/*.parquet"))
                for row in pq.read_table(path, filesystem=filesystem).to_pylist()]
        as_local = json.loads(json.dumps(rows).replace(f"{bucket}/corpus", str(folder)))  # rows name their input file
        assert len(rows) > 10 and sorted(as_local, key=json.dumps) == sorted(read_rows(local / folder_name), key=json.dumps)
    assert not filesystem.glob(f"{bucket}/out/.staging-*")
    stricter = remote.model_copy(update={"quality": remote.quality.model_copy(update={"min_sentences": remote.quality.min_sentences + 1})})
    with pytest.raises(BadInput, match="was made with other settings \\(quality: "):
        run(stricter)
    assert run(remote)["skipped"] is True


def test_command_line_flags_and_overrides(tmp_path):
    config, address = parse_args(["--input", "data/x.jsonl", "--source", "trials", "--output", str(tmp_path),
                                  "dedup.threshold=0.8", "quality.per_source.drug_labels.max_newline_ratio=0.5", "--address", "auto"])
    assert [spec.model_dump()["path"] for spec in config.inputs] == ["data/x.jsonl"] and config.inputs[0].source == "trials"
    assert config.dedup.threshold == 0.8 and address == "auto"
    assert config.quality.for_source("drug_labels").max_newline_ratio == 0.5
    with pytest.raises(ValueError, match="num_perm"):
        parse_args(["--input", "x", "--output", "y", "dedup.bands=64"])
    with pytest.raises(ValueError):
        parse_args(["--input", "x", "--output", "y", "dedup.typo=1"])


def test_shipped_configs_load():
    for name in ("tiny_cpu", "biomed_sources"):
        config = load_config(CurateConfig, REPO / f"configs/curate/{name}.yaml")
        assert config.inputs and config.dedup.bands * config.dedup.rows <= config.dedup.num_perm


def test_balance_cutoffs_keep_the_lowest_scores():
    import numpy as np

    scores = {"a": np.array([5, 1, 9, 3], dtype=np.uint64), "b": np.array([7, 2], dtype=np.uint64), "c": np.array([], dtype=np.uint64)}
    assert balance_cutoffs(scores, None) == ({"a": 3}, 2)  # c is empty, so it does not set the target
    assert balance_cutoffs(scores, 3) == ({"a": 5}, 3)
