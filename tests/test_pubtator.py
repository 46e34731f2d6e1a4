import io
import re

import pytest

from gliner.evaluation.pubtator import (
    PubtatorDocument,
    PubtatorFormatError,
    PubtatorMention,
    iter_pubtator,
    iter_pubtator_records,
    mention_mismatches,
    read_pubtator,
    write_pubtator,
)

TITLE_LINE = re.compile(r"^[^|\t]+\|t\|")


@pytest.fixture
def ncbi_test_path(data_dir):
    return data_dir / "ncbi-disease-pubtator" / "test.pubtator"


def make_document(pmid: str = "1") -> PubtatorDocument:
    title = "Cystic fibrosis in mice."
    abstract = "CF | also called mucoviscidosis."
    doc = PubtatorDocument(pmid=pmid, title=title, abstract=abstract, mentions=[])
    doc.mentions = [
        PubtatorMention(0, 15, "Cystic fibrosis", "SpecificDisease", "D003550"),
        PubtatorMention(25, 27, "CF", "SpecificDisease", "D003550"),
    ]
    return doc


def test_ncbi_test_counts_and_first_document(ncbi_test_path):
    lines = ncbi_test_path.read_text(encoding="utf-8").splitlines()
    n_title_lines = sum(1 for line in lines if TITLE_LINE.match(line))
    n_mention_lines = sum(1 for line in lines if len(line.split("\t")) == 6)

    docs = read_pubtator(ncbi_test_path)

    assert len(docs) == n_title_lines == 100
    assert sum(len(doc.mentions) for doc in docs) == n_mention_lines == 960
    assert len({doc.pmid for doc in docs}) == 100
    first = docs[0]
    assert first.pmid == "9949209"
    assert first.title.startswith("Genetic mapping of the copper toxicosis locus")
    assert first.abstract.startswith("Abnormal hepatic copper accumulation")
    assert first.text == first.title + " " + first.abstract
    assert {mention.type for doc in docs for mention in doc.mentions} <= {
        "SpecificDisease",
        "DiseaseClass",
        "CompositeMention",
        "Modifier",
    }


def test_ncbi_mentions_match_the_text(data_dir, ncbi_test_path):
    docs = read_pubtator(ncbi_test_path)
    assert [mention for doc in docs for mention in mention_mismatches(doc)] == []
    assert read_pubtator(data_dir / "ncbi-disease-pubtator" / "devel.pubtator")[0].mentions

    # The training split has one known annotation whose text carries two trailing spaces.
    train_docs = read_pubtator(data_dir / "ncbi-disease-pubtator" / "train.pubtator")
    mismatches = [(doc.pmid, mention.text) for doc in train_docs for mention in mention_mismatches(doc)]
    assert mismatches == [("10923035", 'generalized epilepsy and febrile seizures " plus "  ')]


def test_mention_mismatches_finds_wrong_offsets():
    doc = make_document()
    assert mention_mismatches(doc) == []
    wrong = PubtatorMention(0, 6, "fibrosis", "SpecificDisease", "D003550")
    doc.mentions.append(wrong)
    assert mention_mismatches(doc) == [wrong]


def test_round_trip_through_a_file(ncbi_test_path, tmp_path):
    docs = read_pubtator(ncbi_test_path)
    out_path = tmp_path / "copy.pubtator"
    write_pubtator(docs, out_path)
    assert read_pubtator(out_path) == docs
    # Same text as the original up to the blank line after the last document.
    original_text = ncbi_test_path.read_text(encoding="utf-8")
    assert out_path.read_text(encoding="utf-8").rstrip("\n") == original_text.rstrip("\n")


def test_write_to_open_file_and_read_back():
    doc = make_document()
    buffer = io.StringIO()
    write_pubtator([doc, make_document("2")], buffer)
    assert buffer.getvalue().startswith(
        "1|t|Cystic fibrosis in mice.\n"
        "1|a|CF | also called mucoviscidosis.\n"
        "1\t0\t15\tCystic fibrosis\tSpecificDisease\tD003550\n"
        "1\t25\t27\tCF\tSpecificDisease\tD003550\n"
        "\n"
        "2|t|"
    )
    records = list(iter_pubtator_records(io.StringIO(buffer.getvalue()), "buffer"))
    assert records == [doc, make_document("2")]
    assert mention_mismatches(records[0]) == []


def test_writer_rejects_values_that_break_the_format():
    doc = make_document()
    doc.mentions[0].text = "Cystic\tfibrosis"
    with pytest.raises(ValueError, match="tab"):
        write_pubtator([doc], io.StringIO())


def test_relation_lines_and_extra_blank_lines_are_skipped():
    text = "\n\n7|t|Title\n7|a|Abstract text.\n7\t0\t5\tTitle\tChemical\tD1\n7\tCID\tD1\tD2\n\n\n\n8|t|T\n8|a|A\n"
    docs = list(iter_pubtator_records(io.StringIO(text), "inline"))
    assert [doc.pmid for doc in docs] == ["7", "8"]
    assert docs[0].mentions == [PubtatorMention(0, 5, "Title", "Chemical", "D1")]
    assert docs[1].mentions == []


def test_documents_without_blank_separator_are_split_at_title_lines():
    text = "1|t|A\n1|a|B\n1\t0\t1\tA\tX\tC1\n2|t|C\n2|a|D\n"
    docs = list(iter_pubtator_records(io.StringIO(text), "inline"))
    assert [(doc.pmid, len(doc.mentions)) for doc in docs] == [("1", 1), ("2", 0)]


@pytest.mark.parametrize(
    "bad_record, bad_line_number",
    [
        ("5|t|Title\n5\t0\t5\tTitle\tX\tC1\n", 2),  # abstract line missing
        ("5|a|Abstract\n5|t|Title\n", 1),  # abstract before title
        ("5|t|Title\n5|a|Abstract\n5\tzero\t5\tTitle\tX\tC1\n", 3),  # offset not an integer
        ("5|t|Title\n5|a|Abstract\n5\t0\t5\n", 3),  # two fields after the pmid
        ("5|t|Title\n5|a|Abstract\n6\t0\t5\tTitle\tX\tC1\n", 3),  # another document's pmid
        ("5|t|Title\n5|a|Abstract\n5\t4\t2\tTitle\tX\tC1\n", 3),  # end before start
        ("5|t|Title\n", 1),  # title only
    ],
)
def test_malformed_record_raises_with_line_number(tmp_path, bad_record, bad_line_number):
    path = tmp_path / "bad.pubtator"
    path.write_text("1|t|Good\n1|a|Doc\n\n" + bad_record, encoding="utf-8")
    expected_line = 3 + bad_line_number
    with pytest.raises(ValueError, match=rf"bad\.pubtator:{expected_line}:"):
        read_pubtator(path)


def test_record_iterator_skips_a_broken_document_and_keeps_the_next():
    text = (
        "1|t|First\n1|a|one\n1\t0\t5\tFirst\tX\tC1\n\n"
        "2|t|Second\n2|a|two\n2\t0\tsix\tSecond\tX\tC2\n2\t0\t6\tSecond\tX\tC2\n\n"
        "3|t|Third\n3|a|three\n3\t6\t11\tthree\tX\tC3\n"
    )
    records = list(iter_pubtator_records(io.StringIO(text), "mixed.pubtator"))

    assert len(records) == 3
    first, error, third = records
    assert isinstance(first, PubtatorDocument) and first.pmid == "1"
    assert isinstance(error, PubtatorFormatError)
    assert (error.source_name, error.line_number) == ("mixed.pubtator", 7)
    assert "integers" in error.reason
    assert str(error).startswith("mixed.pubtator:7:")
    assert isinstance(third, PubtatorDocument) and third.pmid == "3"
    assert mention_mismatches(third) == []


def test_mentions_without_concept_id_or_with_composite_parts_are_read():
    lines = [
        "7|t|Aspirin and warfarin",
        "7|a|Bleeding.",
        "7\t0\t7\tAspirin\tChemical",
        "7\t12\t20\twarfarin\tChemical\tD014859\twarfarin|extra",
        "",
    ]
    [document] = list(iter_pubtator(lines, "inline"))
    assert [(m.text, m.concept_id) for m in document.mentions] == [("Aspirin", ""), ("warfarin", "D014859")]
