"""An output root on an fsspec URL behaves as on a local disk: atomic writes, listings without temporaries, and the
leftovers of a killed run removed (memory:// stands in for s3:// or gs://)."""
import fsspec
import pyarrow as pa

from ray_jobs.output_root import OutputRoot


def test_an_fsspec_url_root_writes_atomically_and_cleans_up_after_a_killed_run():
    root = OutputRoot("memory://bucket/run")
    assert root.url("entities", "a.parquet") == "memory:///bucket/run/entities/a.parquet" and root.protocol == "memory"
    root.write_parquet("entities/a.parquet", pa.table({"doc_id": ["d1"]}))
    root.write_json("_done/a.json", {"documents": 1})
    filesystem = fsspec.filesystem("memory")
    filesystem.pipe("/bucket/run/entities/.tmp-0123-b.parquet", b"PAR1 half")  # a killed run's half-written file
    filesystem.pipe("/bucket/run/_done/broken.json", b'{"documents": ')
    assert root.names("entities", ".parquet") == ["a"] and root.names("_done", ".json") == ["a", "broken"]
    assert root.read_json("_done/a.json") == {"documents": 1} and root.read_json("_done/broken.json") is None
    assert root.read_json("_done/missing.json") is None and root.names("nothing") == []
    assert root.remove_temporaries() == 1 and not filesystem.exists("/bucket/run/entities/.tmp-0123-b.parquet")
    root.remove("_done", "entities")
    assert not root.exists("_done") and not root.exists("entities")
