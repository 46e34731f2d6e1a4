"""Tagged documents as PubTator text and as BioC JSON, for tools that read those rather than Parquet."""
from __future__ import annotations

from gliner.evaluation.pubtator import PubtatorDocument, PubtatorMention, format_pubtator_document


def pubtator_text(documents: list[dict], entities: dict[str, list[dict]]) -> str:
    """Each document's title and abstract lines and its mentions; the text is split after the title when it starts
    with it (offsets stay valid: PubTator joins title and abstract with one space)."""
    return "".join(_pubtator(document, entities.get(document["doc_id"], [])) + "\n" for document in documents)


def bioc_collection(source: str, documents: list[dict], entities: dict[str, list[dict]]) -> dict:
    return {"source": source, "documents": [_bioc(document, entities.get(document["doc_id"], [])) for document in documents]}


def _pubtator(document: dict, entities: list[dict]) -> str:
    text = document["text"].replace("\n", " ").replace("\r", " ")
    title, abstract = text, ""
    if document.get("title") and text.startswith(document["title"] + " "):
        title, abstract = document["title"], text[len(document["title"]) + 1:]
    mentions = [PubtatorMention(e["start"], e["end"], e["text"].replace("\n", " ").replace("\r", " "), e["label"], "") for e in entities]
    return format_pubtator_document(PubtatorDocument(document["doc_id"], title, abstract, mentions))


def _bioc(document: dict, entities: list[dict]) -> dict:
    annotations = [
        {"id": str(index), "infons": {"type": entity["label"], "score": round(entity["score"], 6)}, "text": entity["text"],
         "locations": [{"offset": entity["start"], "length": entity["end"] - entity["start"]}]}
        for index, entity in enumerate(entities)
    ]
    return {"id": document["doc_id"], "infons": {}, "passages": [{"offset": 0, "infons": {}, "text": document["text"], "annotations": annotations}]}
