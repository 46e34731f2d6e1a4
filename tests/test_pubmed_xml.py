"""PubMed XML records: structured abstracts, missing abstracts, deletions, non-ASCII, broken records; byte ranges of a
file read every record once, wherever they are cut."""
import gzip

import pytest

from synth.pubmed_xml import PubmedArticle, PubmedDeletion, PubmedRecordError, iter_pubmed_records

XML = """<?xml version="1.0" encoding="utf-8"?>
<!DOCTYPE PubmedArticleSet PUBLIC "-//NLM//DTD PubMedArticle, 1st January 2025//EN" "pubmed_250101.dtd">
<PubmedArticleSet>
<PubmedArticle><MedlineCitation Status="MEDLINE" Owner="NLM"><PMID Version="1">101</PMID><Article>
<Journal><Title>J Test</Title><JournalIssue><PubDate><Year>2024</Year></PubDate></JournalIssue></Journal>
<ArticleTitle>Cisplatin <i>nephrotoxicity</i> in mice.</ArticleTitle>
<Abstract><AbstractText Label="BACKGROUND" NlmCategory="BACKGROUND">Cisplatin causes kidney injury.</AbstractText>
<AbstractText Label="RESULTS">Mice developed   acute renal
failure (ARF).</AbstractText></Abstract><Language>eng</Language></Article></MedlineCitation></PubmedArticle>
<PubmedArticle><MedlineCitation><PMID Version="1">102</PMID><Article><ArticleTitle>Ménière's disease and β-amyloid.</ArticleTitle></Article></MedlineCitation></PubmedArticle>
<PubmedArticle><MedlineCitation><PMID Version="1">103</PMID><Article><ArticleTitle>Broken <b>record</ArticleTitle></Article></MedlineCitation></PubmedArticle>
<DeleteCitation><PMID Version="1">90</PMID><PMID Version="1">91</PMID></DeleteCitation>
<PubmedArticle><MedlineCitation><Article><ArticleTitle>No PMID at all.</ArticleTitle></Article></MedlineCitation></PubmedArticle>
<PubmedArticle><MedlineCitation><PMID Version="1">104</PMID><Article><ArticleTitle>Last.</ArticleTitle><Abstract><AbstractText>Plain abstract.</AbstractText></Abstract></Article></MedlineCitation></PubmedArticle>
</PubmedArticleSet>"""


@pytest.fixture
def sample(tmp_path):
    path = tmp_path / "sample.xml"
    path.write_text(XML, encoding="utf-8")
    return str(path)


def test_records_in_order_with_errors_in_place(sample):
    records = list(iter_pubmed_records(sample))
    kinds = [type(record).__name__ for record in records]
    assert kinds == ["PubmedArticle", "PubmedArticle", "PubmedRecordError", "PubmedDeletion", "PubmedRecordError", "PubmedArticle"]
    first = records[0]
    assert first.pmid == "101"
    assert first.title == "Cisplatin nephrotoxicity in mice."
    assert first.abstract == "BACKGROUND: Cisplatin causes kidney injury. RESULTS: Mice developed acute renal failure (ARF)."
    assert first.text == first.title + " " + first.abstract
    assert first.meta == {"journal": "J Test", "year": "2024", "language": "eng", "structured_abstract": True}
    assert records[1].abstract == "" and records[1].text == "Ménière's disease and β-amyloid."
    assert "malformed XML" in records[2].reason and records[2].source == sample
    assert records[2].offset == XML.encode("utf-8").index(b"<PubmedArticle><MedlineCitation><PMID Version=\"1\">103")
    assert records[3] == PubmedDeletion(["90", "91"], XML.encode("utf-8").index(b"<DeleteCitation>"))
    assert "no PMID" in records[4].reason
    assert records[5].text == "Last. Plain abstract."


def test_gzip_files_and_an_unclosed_last_record(tmp_path):
    path = tmp_path / "pubmed.xml.gz"
    path.write_bytes(gzip.compress(XML.encode("utf-8")))
    assert sum(isinstance(r, PubmedArticle) for r in iter_pubmed_records(str(path))) == 3
    cut = tmp_path / "cut.xml"
    cut.write_text(XML[: XML.rindex("<PubmedArticle>") + 40], encoding="utf-8")
    last = list(iter_pubmed_records(str(cut)))[-1]
    assert isinstance(last, PubmedRecordError) and "not closed" in last.reason


@pytest.mark.parametrize("compressed", [False, True])
def test_byte_ranges_cut_anywhere_read_each_record_once(tmp_path, compressed):
    """Every cut point of the file, records of every kind included, at several chunk sizes."""
    from synth import byte_ranges

    data = XML.encode("utf-8")
    path = tmp_path / ("sample.xml.gz" if compressed else "sample.xml")
    path.write_bytes(gzip.compress(data) if compressed else data)
    whole = list(iter_pubmed_records(str(path)))
    for cut in range(0, len(data) + 1, 7):
        assert list(iter_pubmed_records(str(path), 0, cut)) + list(iter_pubmed_records(str(path), cut, None)) == whole, cut
    original = byte_ranges.READ_CHUNK
    try:
        byte_ranges.READ_CHUNK = 50  # records and tags cut by every chunk edge
        assert list(iter_pubmed_records(str(path), 0, 400)) + list(iter_pubmed_records(str(path), 400, None)) == whole
    finally:
        byte_ranges.READ_CHUNK = original


def test_undecodable_bytes_become_an_error(tmp_path):
    path = tmp_path / "latin1.xml"
    path.write_bytes(XML.replace("Ménière", "M\xe9ni\xe8re").encode("latin-1", errors="replace"))
    records = list(iter_pubmed_records(str(path)))
    assert isinstance(records[1], PubmedRecordError) and "UTF-8" in records[1].reason
    assert [r.pmid for r in records if isinstance(r, PubmedArticle)] == ["101", "104"]  # only that record is lost
