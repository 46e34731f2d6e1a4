"""PubMed baseline-like XML for benchmarks: the shipped NCBI-disease abstracts dressed as full PubMed records.

Real baseline records carry far more than a title and an abstract: journal, dates, an author list with
affiliations, MeSH headings, publication types, history, article ids and, in recent years, the reference list.
The parser reads and checks all of it, so a benchmark on bare title + abstract records would flatter it. These
records add random fields of those kinds (deterministic, seeded) to about 11 KB each, a little over the average of
a 2025 baseline file, whose ~30,000 records unpack to roughly 150-300 MB.
"""
from __future__ import annotations

import gzip
import random
from pathlib import Path
from xml.sax.saxutils import escape

REPO = Path(__file__).resolve().parents[1]


def abstracts() -> list[tuple[str, str]]:
    """(title, abstract) of the 792 NCBI-disease abstracts."""
    from gliner.evaluation.pubtator import read_pubtator

    return [(document.title, document.abstract) for split in ("train", "devel", "test")
            for document in read_pubtator(REPO / f"data/ncbi-disease-pubtator/{split}.pubtator")]


def write_baseline_file(path: Path, count: int, seed: int = 0, first_pmid: int = 30_000_000) -> list[tuple[str, str, str]]:
    """A gzipped baseline-like file of `count` records; returns (pmid, title, abstract) in file order."""
    sources = abstracts()
    rng = random.Random(seed)
    vocabulary = " ".join(abstract for _, abstract in sources).split()
    records, written = [], []
    for index in range(count):
        title, abstract = sources[index % len(sources)]
        pmid = str(first_pmid + index)
        records.append(_record(pmid, title, abstract, rng, vocabulary))
        written.append((pmid, title, abstract))
    xml = ('<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE PubmedArticleSet PUBLIC "-//NLM//DTD PubMedArticle, 1st January '
           '2025//EN" "https://dtd.nlm.nih.gov/ncbi/pubmed/out/pubmed_250101.dtd">\n<PubmedArticleSet>\n' + "".join(records)
           + "</PubmedArticleSet>\n")
    path.write_bytes(gzip.compress(xml.encode("utf-8"), compresslevel=6))
    return written


def _record(pmid: str, title: str, abstract: str, rng: random.Random, vocabulary: list[str]) -> str:
    def words(count: int) -> str:
        return escape(" ".join(rng.choice(vocabulary) for _ in range(count)))

    authors = "".join(
        f'<Author ValidYN="Y"><LastName>{words(1)}</LastName><ForeName>{words(1)}</ForeName><Initials>AB</Initials>'
        f"<AffiliationInfo><Affiliation>{words(12)}</Affiliation></AffiliationInfo></Author>\n" for _ in range(rng.randint(2, 10)))
    mesh = "".join(
        f'<MeshHeading><DescriptorName UI="D{rng.randint(0, 999_999):06d}" MajorTopicYN="N">{words(2)}</DescriptorName>'
        f'<QualifierName UI="Q000{rng.randint(100, 999)}" MajorTopicYN="Y">{words(1)}</QualifierName></MeshHeading>\n'
        for _ in range(rng.randint(5, 15)))
    references = "".join(
        f'<Reference><Citation>{words(20)}</Citation><ArticleIdList><ArticleId IdType="pubmed">{rng.randint(1, 30_000_000)}'
        f"</ArticleId></ArticleIdList></Reference>\n" for _ in range(rng.randint(0, 40)))
    return f"""<PubmedArticle>
  <MedlineCitation Status="MEDLINE" Owner="NLM">
    <PMID Version="1">{pmid}</PMID>
    <DateCompleted><Year>2020</Year><Month>05</Month><Day>12</Day></DateCompleted>
    <Article PubModel="Print-Electronic">
      <Journal><ISSN IssnType="Electronic">1234-5678</ISSN><JournalIssue CitedMedium="Internet"><Volume>12</Volume><Issue>3</Issue><PubDate><Year>2020</Year><Month>Mar</Month></PubDate></JournalIssue><Title>{words(5)}</Title><ISOAbbreviation>J X</ISOAbbreviation></Journal>
      <ArticleTitle>{escape(title)}</ArticleTitle>
      <Pagination><MedlinePgn>100-110</MedlinePgn></Pagination>
      <ELocationID EIdType="doi" ValidYN="Y">10.1000/{pmid}</ELocationID>
      <Abstract>
        <AbstractText>{escape(abstract)}</AbstractText>
      </Abstract>
      <AuthorList CompleteYN="Y">
{authors}      </AuthorList>
      <Language>eng</Language>
      <PublicationTypeList><PublicationType UI="D016428">Journal Article</PublicationType></PublicationTypeList>
    </Article>
    <MedlineJournalInfo><Country>England</Country><MedlineTA>J X</MedlineTA><NlmUniqueID>0001</NlmUniqueID></MedlineJournalInfo>
    <MeshHeadingList>
{mesh}    </MeshHeadingList>
  </MedlineCitation>
  <PubmedData>
    <History><PubMedPubDate PubStatus="received"><Year>2019</Year><Month>1</Month><Day>2</Day></PubMedPubDate><PubMedPubDate PubStatus="pubmed"><Year>2020</Year><Month>3</Month><Day>2</Day></PubMedPubDate></History>
    <PublicationStatus>ppublish</PublicationStatus>
    <ArticleIdList><ArticleId IdType="pubmed">{pmid}</ArticleId><ArticleId IdType="doi">10.1000/{pmid}</ArticleId></ArticleIdList>
    <ReferenceList>
{references}    </ReferenceList>
  </PubmedData>
</PubmedArticle>
"""
