"""Work units: planned deterministically, small enough, and together reading every record of a file exactly once,
wherever the cuts fall (JSONL, PubTator, Parquet; plain, gzipped, on a local disk and on an fsspec URL)."""
import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from corpus.documents import Document, DocumentError, read_documents, read_unit, read_units
from corpus.work_units import UnitSizes, WorkUnit, file_key, list_input_files, plan_file, plan_inputs


def jsonl_corpus(count: int) -> bytes:
    lines = [json.dumps({"doc_id": f"d{index}", "text": f"Document {index} is about aspirin ü."}) for index in range(count)]
    lines[7] = "not json"
    lines[11] = ""  # a blank line is no record
    return ("\n".join(lines) + "\n").encode("utf-8")


def keys(records) -> list:
    return [(type(record).__name__, getattr(record, "doc_id", None), getattr(record, "location", None)) for record in records]


def every_cut(path: str, data_format: str, size: int, step: int):
    """Two units cut at every `step`-th byte must read what one unit reads."""
    whole = keys(read_documents(path, data_format))
    for cut in range(0, size + 1, step):
        first = WorkUnit("a", "k", path, data_format, "bytes", 0, cut)
        second = WorkUnit("b", "k", path, data_format, "bytes", cut, None)
        assert keys(read_unit(first)) + keys(read_unit(second)) == whole, cut
    return whole


@pytest.mark.parametrize("compressed", [False, True])
def test_jsonl_byte_ranges_cut_anywhere_read_each_line_once(tmp_path, compressed):
    data = jsonl_corpus(40)
    path = tmp_path / ("corpus.jsonl.gz" if compressed else "corpus.jsonl")
    path.write_bytes(gzip.compress(data) if compressed else data)
    whole = every_cut(str(path), "jsonl", len(data), 5)
    assert len(whole) == 39 and ("DocumentError", None, f"byte {data.index(b'not json')}") in whole
    units = plan_file(str(path), "jsonl", "corpus", UnitSizes(documents=5, bytes=1 << 30))
    assert len(units) == 8 and units[-1].end is None and all(unit.kind == "bytes" for unit in units)
    assert [key for unit in units for key in keys(read_unit(unit))] == whole


def test_pubtator_byte_ranges_keep_blocks_whole(tmp_path, data_dir):
    blocks = (data_dir / "ncbi-disease-pubtator/test.pubtator").read_text(encoding="utf-8").split("\n\n")[:5]
    blocks.insert(2, "a77|a|An abstract line without its title line.")
    data = ("\n\n".join(blocks) + "\n").encode("utf-8")
    path = tmp_path / "corpus.pubtator"
    path.write_bytes(data)
    whole = every_cut(str(path), "pubtator", len(data), 3)
    assert [kind for kind, _, _ in whole] == ["Document"] * 2 + ["DocumentError"] + ["Document"] * 3


def test_parquet_units_are_row_ranges_inside_and_across_row_groups(tmp_path):
    rows = [{"doc_id": f"d{index}", "text": f"text {index}"} for index in range(1000)]
    path = tmp_path / "corpus.parquet"
    with pq.ParquetWriter(path, pa.schema([("doc_id", pa.string()), ("text", pa.string())])) as writer:
        for start, end in ((0, 10), (10, 20), (20, 700), (700, 1000)):  # two small row groups, a large one, a medium one
            writer.write_table(pa.Table.from_pylist(rows[start:end]))
    units = plan_file(str(path), "parquet", "corpus", UnitSizes(documents=150, bytes=1 << 30))
    ranges = [(unit.start, unit.end) for unit in units]
    assert ranges[0] == (0, 20) and ranges[-1][1] == 1000 and all(end - start <= 150 for start, end in ranges)
    assert all(first[1] == second[0] for first, second in zip(ranges, ranges[1:]))
    read = [record for unit in units for record in read_unit(unit)]
    assert [record.doc_id for record in read] == [row["doc_id"] for row in rows]
    bad = WorkUnit("u", "k", str(path), "parquet", "rows", 690, 710)
    from corpus.documents import Columns

    [error] = list(read_unit(bad, Columns(text="body")))
    assert isinstance(error, DocumentError) and "missing column(s) ['body']" in error.reason


def test_plans_are_deterministic_and_ids_name_file_and_range(tmp_path):
    (tmp_path / "a.jsonl").write_bytes(jsonl_corpus(30))
    (tmp_path / "notes.txt").write_text("One document in a text file.")
    (tmp_path / "_SUMMARY.json").write_text("{}")  # names starting with _ or . are not inputs
    sizes = UnitSizes(documents=10, bytes=1 << 30)
    first, second = plan_inputs(str(tmp_path), "auto", sizes), plan_inputs(str(tmp_path) + "/", "auto", sizes)
    assert first == second and len({unit.unit_id for unit in first}) == len(first) == 4
    assert [unit.kind for unit in first] == ["bytes"] * 3 + ["file"]
    assert first[0].unit_id.startswith("a.jsonl-") and first[0].unit_id.endswith(".b0-" + str(first[0].end))
    [text] = list(read_unit(first[-1]))
    assert isinstance(text, Document) and text.doc_id == "notes"
    assert plan_inputs(str(tmp_path / "*.jsonl"), "auto", sizes) == first[:3]  # a glob names files as the folder does
    assert plan_inputs(str(tmp_path / "a.jsonl"), "auto", sizes) == first[:3]  # and so does the file's own path
    with pytest.raises(FileNotFoundError, match="no input files"):
        plan_inputs(str(tmp_path / "missing.jsonl"), "auto", sizes)


def test_fsspec_urls_plan_and_read_like_local_files():
    import fsspec

    filesystem = fsspec.filesystem("memory")
    filesystem.pipe("/corpus/part-0.jsonl", jsonl_corpus(20))
    filesystem.pipe("/corpus/part-1.jsonl.gz", gzip.compress(jsonl_corpus(20)))
    assert list_input_files("memory://corpus") == ["memory:///corpus/part-0.jsonl", "memory:///corpus/part-1.jsonl.gz"]
    units = plan_inputs("memory://corpus", "auto", UnitSizes(documents=6, bytes=1 << 30))
    assert len(units) == 8 and {unit.file_key for unit in units} == {file_key(path) for path in list_input_files("memory://corpus")}
    assert units[0].file_key.startswith("part-0.jsonl-") and units == plan_inputs("memory://corpus/*", "auto", UnitSizes(documents=6, bytes=1 << 30))
    documents = [record.doc_id for unit in units for record in read_unit(unit) if isinstance(record, Document)]
    assert len(documents) == 2 * 18 and len(set(documents)) == 18


def test_a_truncated_gzip_file_keeps_what_was_read_and_ends_with_one_error(tmp_path):
    data = gzip.compress(jsonl_corpus(2000))
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])
    records = list(read_documents(str(path), "jsonl"))
    assert sum(isinstance(record, Document) for record in records) > 500
    assert isinstance(records[-1], DocumentError) and records[-1].reason.startswith("unreadable file: ")


def test_units_of_one_compressed_file_read_in_one_pass_as_if_read_alone(tmp_path):
    """A read group: a gzip file's units in one pass (gzip cannot start mid-file), adjacent or not, and a damaged
    file's error in every unit from the damage on."""
    import random

    rng = random.Random(0)  # text that compresses little, so that the damage falls past the first unit
    lines = [json.dumps({"doc_id": f"d{index}", "text": "".join(rng.choices("abcdefghij klmnop", k=60))}) for index in range(4000)]
    data = gzip.compress(("\n".join(lines) + "\n").encode())
    path = tmp_path / "corpus.jsonl.gz"
    path.write_bytes(data)
    units = plan_file(str(path), "jsonl", "corpus", UnitSizes(documents=400, bytes=1 << 30))
    alone = {unit.unit_id: keys(read_unit(unit)) for unit in units}
    assert len(units) >= 8 and [(unit.unit_id, keys(records)) for unit, records in read_units(units)] == list(alone.items())
    pending = units[1::3]  # what a rerun leaves: the records of the units between are passed over
    assert [(unit.unit_id, keys(records)) for unit, records in read_units(pending)] == [(unit.unit_id, alone[unit.unit_id]) for unit in pending]

    path.write_bytes(data[: len(data) // 2])
    read = list(read_units(units))
    unreadable = [index for index, (_, records) in enumerate(read)
                  if isinstance(records[-1], DocumentError) and records[-1].reason.startswith("unreadable file: ")]
    damaged = unreadable[0]
    assert unreadable == list(range(damaged, len(units)))
    assert 0 < damaged < len(units) - 1 and all(len(records) == 1 for _, records in read[damaged + 1:])


def test_multi_member_gzip_units_are_sized_by_the_decompressed_size_not_the_trailer(tmp_path):
    """A gzip file of several members (what `cat a.gz b.gz` or a parallel compressor makes): its trailer records only
    the last member's size, here 1/25 of the file, so units planned from it would be 25 times too big and the last,
    open-ended one would hold almost everything. Planned from the decompressed size, every unit is within its
    byte budget and the units read every record once."""
    from corpus.byte_ranges import uncompressed_size

    members = [jsonl_corpus(1000) for _ in range(24)] + [jsonl_corpus(40)]
    path = tmp_path / "members.jsonl.gz"
    path.write_bytes(b"".join(gzip.compress(member) for member in members))
    whole = b"".join(members)
    trailer = int.from_bytes(path.read_bytes()[-4:], "little")
    assert trailer * 20 < len(whole) == uncompressed_size(str(path))
    budget = 64 << 10
    units = plan_file(str(path), "jsonl", "members", UnitSizes(documents=1 << 30, bytes=budget))
    assert len(units) == -(-len(whole) // budget) and units[-1].end is None and len(whole) - units[-1].start <= budget
    read = [key for unit in units for key in keys(read_unit(unit))]
    assert len(read) == 24 * 999 + 39 and read == keys(read_documents(str(path), "jsonl"))  # each member has one blank line


def test_a_unit_is_at_most_1_gib_of_input_so_its_text_fits_one_arrow_array():
    """A unit's text travels as one Arrow string array (at most 2 GiB) and is held by its read task: a unit budget
    over 1 GiB is refused, however the documents estimate comes out."""
    from ray_jobs.runtime.unit_pipeline import MAX_UNIT_BYTES, UnitSettings

    assert UnitSettings(bytes=MAX_UNIT_BYTES).bytes == 1 << 30
    with pytest.raises(ValueError, match="less than or equal to 1073741824"):
        UnitSettings(bytes=3 << 30)
