"""An output root on a local disk and on a real S3-compatible server (moto on 127.0.0.1): atomic writes, listings
that are never stale, a commit whose request count does not grow with the units already committed, and the
leftovers of a killed run removed."""
import json
from concurrent.futures import ThreadPoolExecutor

import fsspec
import pyarrow as pa
import pytest

from ray_jobs.runtime.output_root import OutputRoot
from gliner.label_sets import LabelSet
from ray_jobs.tag import TagConfig, commit_unit
from ray_jobs.runtime.unit_markers import done_units, read_markers
from ray_jobs.runtime.unit_pipeline import pack
from s3_server import counted_s3_calls
from corpus.error_rows import error_table
from corpus.latest_versions import INDEX_SCHEMA
from corpus.work_units import WorkUnit


def test_a_local_root_writes_through_a_temporary_and_cleans_up_after_a_killed_run(tmp_path):
    root = OutputRoot(str(tmp_path / "run"))
    assert root.protocol is None and not root.atomic_puts and root.url("a") == f"{tmp_path}/run/a"
    root.write_parquet("entities/a.parquet", pa.table({"doc_id": ["d1"]}))
    root.write_json("_done/a.json", {"documents": 1})
    (tmp_path / "run/entities/.tmp-0123-b.parquet").write_bytes(b"PAR1 half")  # a killed run's half-written file
    (tmp_path / "run/_done/broken.json").write_bytes(b'{"documents": ')
    assert root.names("entities", ".parquet") == ["a"] and root.names("_done", ".json") == ["a", "broken"]
    assert root.read_json("_done/a.json") == {"documents": 1} and root.read_json("_done/broken.json") is None
    assert root.read_json("_done/missing.json") is None and root.names("nothing") == []

    def crash_half_way(handle):
        handle.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        root.write_with("_done/a.json", crash_half_way)
    assert root.read_json("_done/a.json") == {"documents": 1} and root.remove_temporaries() == 1
    root.remove("_done", "entities")
    assert not root.exists("_done") and not root.exists("entities")


def test_memory_urls_put_each_file_whole():
    root = OutputRoot("memory://bucket/run")
    assert root.url("entities", "a.parquet") == "memory:///bucket/run/entities/a.parquet" and root.atomic_puts
    root.write_json("_done/a.json", {"documents": 1})
    assert fsspec.filesystem("memory").ls("/bucket/run/_done", detail=False) == ["/bucket/run/_done/a.json"]


LABELS = ["chemical", "disease"]


def unit_row(index: int) -> pa.Table:
    """A tagged unit as the commit stage receives it: one document, one window, two spans (two entities), no errors."""
    from gliner.decoding import Span
    from gliner.inputs import Window, split_words
    from gliner.prepare import Chunk
    from ray_jobs.tag import DOCUMENT_SCHEMA, tagged_unit
    from corpus.tag_batches import label_sets_table, windows_table, words_table

    unit = WorkUnit(f"corpus.jsonl-0000.b{index * 100}-{index * 100 + 100}", "corpus.jsonl-0000", "s3://in/corpus.jsonl", "jsonl", "bytes",
                    index * 100, index * 100 + 100)
    text = "aspirin eased the headache"
    words = split_words(text)
    read = pack(unit, documents=pa.Table.from_pylist([{"doc_id": f"d{index}", "text": text, "title": None, "label_set": 0}], DOCUMENT_SCHEMA),
                label_sets=label_sets_table([LabelSet.of(LABELS)]), errors=error_table([]), index=INDEX_SCHEMA.empty_table(), windows=windows_table([Chunk(0, Window(0, 4, 0, 4))]),
                words=words_table([words]), stats=json.dumps({"deletions": 0, "replaced_in_unit": 0}))
    spans = {0: [Span(0, 0, "chemical", 0.9), Span(3, 3, "disease", 0.8)]}
    return tagged_unit(read, spans, {"actor": "a", "tag_seconds": 0.0})


@pytest.fixture
def direct_s3(s3_server, monkeypatch):
    """Straight to moto's server, not through the fault proxy (4,000 requests relayed by this process cost time),
    with s3fs's cached clients dropped before and after so that none keeps the other endpoint."""
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.server_endpoint)
    yield s3_server
    s3fs.S3FileSystem.clear_instance_cache()


def test_s3_commits_cost_the_same_requests_at_10_and_1000_units_and_listings_are_never_stale(direct_s3):
    s3_server = direct_s3
    output = s3_server.new_bucket() + "/tagged"
    config = TagConfig(model="m", labels=LABELS, input="s3://in/corpus.jsonl", output=output).model_dump()
    root = OutputRoot(output)
    assert done_units(root) == set()  # a listing of _done/ before anything is in it (what a rerun does first)

    requests_per_commit = {}
    with ThreadPoolExecutor(8) as pool:  # the commits between the two counted ones, eight at a time
        for first, counted in ((0, 9), (10, 999)):
            list(pool.map(lambda index: commit_unit(unit_row(index), config), range(first, counted)))
            with counted_s3_calls() as calls:
                commit_unit(unit_row(counted), config)
            requests_per_commit[counted + 1] = sorted(calls.operations)
    # One PUT per file (entities, errors, marker): no listing, no temporary, no copy, no delete, at 10 units as at 1,000.
    assert requests_per_commit == {10: ["put_object"] * 3, 1000: ["put_object"] * 3}

    # The same OutputRoot listed _done/ when it was empty: it still sees all 1,000 markers, and reads each by one GET.
    unit_ids = {unit_row(index).column("unit_id")[0].as_py() for index in range(1000)}
    assert done_units(root) == unit_ids
    with counted_s3_calls() as calls:
        markers = read_markers(root, unit_ids)
    assert None not in markers and sum(marker["entities"] for marker in markers) == 2000
    assert sorted(set(calls.operations)) == ["get_object"] and len(calls.operations) == 1000
    keys = s3_server.keys(output)
    assert len(keys) == 3000 and not [key for key in keys if ".tmp-" in key]

    # The finding this guards against: s3fs's own directory cache answers from the first listing of a folder.
    cached, path = fsspec.core.url_to_fs(output)
    cached.ls(f"{path}/_done")
    root.write_json("_done/late.json", {"documents": 0})
    assert not cached.exists(f"{path}/_done/late.json") and root.read_json("_done/late.json") == {"documents": 0}
