"""PubMed XML records: structured abstracts, missing abstracts, deletions, non-ASCII, broken records; the source's
whitespace kept and inline markup flattened; byte ranges of a file read every record once, wherever they are cut."""
import gzip

import pytest

from corpus.pubmed_xml import PubmedArticle, PubmedDeletion, PubmedRecordError, iter_pubmed_records

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
    assert first.abstract == "BACKGROUND: Cisplatin causes kidney injury. RESULTS: Mice developed   acute renal\nfailure (ARF)."
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
    from corpus import byte_ranges

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


def one_article(tmp_path, title: str, abstract: str, journal: str = "J Test") -> PubmedArticle:
    xml = (f'<?xml version="1.0" encoding="utf-8"?>\n<PubmedArticleSet><PubmedArticle><MedlineCitation><PMID Version="1">7</PMID>'
           f"<Article><Journal><Title>{journal}</Title></Journal><ArticleTitle>{title}</ArticleTitle><Abstract>{abstract}</Abstract>"
           "</Article></MedlineCitation></PubmedArticle></PubmedArticleSet>")
    path = tmp_path / "one.xml"
    path.write_text(xml, encoding="utf-8")
    [record] = iter_pubmed_records(str(path))
    return record


def test_whitespace_inside_a_field_is_kept_as_in_the_source(tmp_path):
    """Double spaces, a tab and a newline inside the title and abstract survive, so offsets index PubMed's own text;
    only the ends of each field are stripped (the joined text is what is tagged)."""
    record = one_article(tmp_path, "  Copper  toxicosis\tin terriers. ",
                         "<AbstractText>\n BACKGROUND/AIMS  The  copper\ttoxicosis\nlocus was mapped.  \n</AbstractText>",
                         journal=" Journal  of\nTests ")
    assert record.title == "Copper  toxicosis\tin terriers."
    assert record.abstract == "BACKGROUND/AIMS  The  copper\ttoxicosis\nlocus was mapped."
    assert record.text == "Copper  toxicosis\tin terriers. BACKGROUND/AIMS  The  copper\ttoxicosis\nlocus was mapped."
    assert record.text.index("locus") == len(record.title) + 1 + record.abstract.index("locus")
    assert record.meta["journal"] == "Journal of Tests"  # metadata is not tagged: collapsed


def test_structured_sections_keep_their_inner_whitespace_and_join_with_one_space(tmp_path):
    record = one_article(tmp_path, "T.", '<AbstractText Label="METHODS"> Mice  were\ttreated. </AbstractText>\n  '
                                         '<AbstractText Label="RESULTS">Renal  failure.</AbstractText>')
    assert record.abstract == "METHODS: Mice  were\ttreated. RESULTS: Renal  failure."
    assert record.meta["structured_abstract"] is True


def test_inline_markup_is_flattened_to_its_text(tmp_path):
    """<i>, <b>, <sup>, <sub> and nested markup become their text, the spaces around them as in the source."""
    record = one_article(tmp_path, "<i>BRCA1</i>  and Ca<sup>2+</sup> in H<sub>2</sub>O.",
                         "<AbstractText>The <b>p53 <i>(TP53)</i></b>  gene; IC<sub>50</sub> &lt; 5 &amp; 10<sup>-3</sup>  M.</AbstractText>")
    assert record.title == "BRCA1  and Ca2+ in H2O."
    assert record.abstract == "The p53 (TP53)  gene; IC50 < 5 & 10-3  M."
    assert record.text == record.title + " " + record.abstract
