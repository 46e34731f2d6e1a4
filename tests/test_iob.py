from pathlib import Path

import fsspec
import pytest

from gliner.evaluation.iob import iob_entity_types, read_iob


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def count_lines(path: Path, predicate) -> int:
    return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if predicate(line))


def test_reads_first_bc5cdr_sentence_with_inclusive_ends(data_dir):
    examples = read_iob(data_dir / "bioner-iob" / "BC5CDR" / "test.tsv")
    first = examples[0]
    assert first["tokenized_text"][:5] == ["Torsade", "de", "pointes", "ventricular", "tachycardia"]
    assert first["ner"] == [
        [0, 2, "Disease"],  # Torsade de pointes
        [3, 4, "Disease"],  # ventricular tachycardia
        [9, 9, "Chemical"],  # dobutamine
        [15, 16, "Disease"],  # dilated cardiomyopathy
        [18, 20, "Disease"],  # congestive heart failure
    ]


@pytest.mark.parametrize(
    "dataset, n_sentences, n_entities",
    [("NCBI-disease", 940, 960), ("BC5CDR", 4797, 9809), ("JNLPBA", 3856, 8662)],
)
def test_sentence_and_entity_counts(data_dir, dataset, n_sentences, n_entities):
    path = data_dir / "bioner-iob" / dataset / "test.tsv"
    examples = read_iob(path)

    # Independent counts: every sentence ends with a blank line; the corpora have no I- tag that
    # starts an entity, so entities are B- tags; -DOCSTART- forms a sentence of its own.
    n_docstarts = count_lines(path, lambda line: line.startswith("-DOCSTART-"))
    assert len(examples) == count_lines(path, lambda line: not line.strip()) - n_docstarts == n_sentences
    assert sum(len(example["ner"]) for example in examples) == count_lines(path, lambda line: "\tB-" in line)
    assert sum(len(example["ner"]) for example in examples) == n_entities

    n_tokens = count_lines(path, lambda line: bool(line.strip())) - n_docstarts
    assert sum(len(example["tokenized_text"]) for example in examples) == n_tokens
    for example in examples:
        for start, end, _ in example["ner"]:
            assert 0 <= start <= end < len(example["tokenized_text"])


def test_jnlpba_docstart_lines_are_skipped(data_dir):
    path = data_dir / "bioner-iob" / "JNLPBA" / "test.tsv"
    examples = read_iob(path)
    assert all("-DOCSTART-" not in example["tokenized_text"] for example in examples)
    assert examples[0]["tokenized_text"][:3] == ["Number", "of", "glucocorticoid"]
    assert iob_entity_types(path) == ["DNA", "RNA", "cell_line", "cell_type", "protein"]


def test_entity_types(data_dir):
    assert iob_entity_types(data_dir / "bioner-iob" / "BC5CDR" / "test.tsv") == ["Chemical", "Disease"]
    assert iob_entity_types(str(data_dir / "bioner-iob" / "NCBI-disease" / "devel.tsv")) == ["Disease"]


def test_label_map_renames_types(data_dir):
    path = data_dir / "bioner-iob" / "BC5CDR" / "test.tsv"
    renamed = read_iob(path, label_map={"Chemical": "chemical", "Disease": "disease"})
    original = read_iob(path)
    assert renamed[0]["ner"][2] == [9, 9, "chemical"]
    assert [[span[:2] for span in example["ner"]] for example in renamed] == [
        [span[:2] for span in example["ner"]] for example in original
    ]
    assert {label for example in renamed for _, _, label in example["ner"]} == {"chemical", "disease"}


def test_label_map_missing_types_raise(data_dir):
    with pytest.raises(ValueError, match=r"\['Disease'\]"):
        read_iob(data_dir / "bioner-iob" / "BC5CDR" / "test.tsv", label_map={"Chemical": "chemical"})


def test_inside_tag_after_outside_starts_an_entity(tmp_path):
    path = write_lines(tmp_path / "ill.tsv", ["a\tO", "b\tI-X", "c\tI-X", "d\tI-Y", "", "e\tB-X"])
    assert read_iob(path) == [
        {"tokenized_text": ["a", "b", "c", "d"], "ner": [[1, 2, "X"], [3, 3, "Y"]]},
        {"tokenized_text": ["e"], "ner": [[0, 0, "X"]]},
    ]


def test_missing_final_blank_line_and_repeated_blank_lines(tmp_path):
    path = tmp_path / "no_final_blank.tsv"
    path.write_text("\n\na\tB-X\n\n\n\nb\tO\nc\tB-X", encoding="utf-8")
    examples = read_iob(path)
    assert [example["tokenized_text"] for example in examples] == [["a"], ["b", "c"]]
    assert examples[1]["ner"] == [[1, 1, "X"]]


@pytest.mark.parametrize(
    "bad_line",
    ["token", "token\tO\textra", "token\tX-Disease", "token\tB-", "token\to", "\tO"],
)
def test_malformed_lines_name_file_and_line(tmp_path, bad_line):
    path = write_lines(tmp_path / "bad.tsv", ["a\tO", "", "b\tB-X", bad_line])
    with pytest.raises(ValueError, match=r"bad\.tsv:4:"):
        read_iob(path)


def test_reads_fsspec_urls():
    url = "memory://iob-test/sample.tsv"
    with fsspec.open(url, "wt", encoding="utf-8") as file:
        file.write("IL-2\tB-protein\ngene\tI-protein\nin\tO\n\nT\tB-cell_type\ncells\tI-cell_type\n")
    try:
        assert read_iob(url) == [
            {"tokenized_text": ["IL-2", "gene", "in"], "ner": [[0, 1, "protein"]]},
            {"tokenized_text": ["T", "cells"], "ner": [[0, 1, "cell_type"]]},
        ]
        assert iob_entity_types(url) == ["cell_type", "protein"]
    finally:
        fsspec.filesystem("memory").rm(url)
