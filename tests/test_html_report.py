"""The HTML pages, read back with html.parser: every entity is one highlight carrying its label, text is escaped,
the threshold curves are embedded as JSON equal to the results, and nothing is fetched from elsewhere."""
import json

import pytest
from conftest import HtmlPage

from gliner.evaluation.scoring import evaluate_predictions, pool_results, report_documents, threshold_curve
from gliner.evaluation.gold import load_gold
from gliner.evaluation.html_documents import label_colours, render_documents, render_label_counts, render_page
from gliner.evaluation.html_report import CURVES_ID, curves_data, render_evaluation_report

IOB_TEXT = "Aspirin\tB-Chemical\ncauses\tO\nheart\tB-Disease\nfailure\tI-Disease\n.\tO\n\nNo\tO\nentities\tO\n"


def assert_self_contained(page: HtmlPage) -> None:
    assert not [attributes for _, attributes in page.tags if "src" in attributes or "href" in attributes]
    assert not [tag for tag, _ in page.tags if tag in ("link", "img", "iframe", "object", "embed")]
    assert all("src" not in attributes for tag, attributes in page.tags if tag == "script")


def test_documents_highlight_every_entity_with_its_label_and_escape_text():
    text = 'Dr. <b>O\'Neil</b> & "BRCA1" in breast cancer'
    entities = [
        {"start": 4, "end": 17, "label": 'person <x> "y"', "score": 0.91},
        {"start": 27, "end": 32, "label": "gene"},
        {"start": 36, "end": 49, "label": "disease"},
        {"start": 36, "end": 42, "label": "anatomy"},  # inside "breast cancer": a second layer
    ]
    documents = [(text, entities), ("No entities here.", [])]
    html_text = render_page("Demo <page>", render_label_counts(documents) + render_documents(documents))
    page = HtmlPage(html_text)
    marks = sorted(page.marks, key=lambda mark: (int(mark["data-start"]), -int(mark["data-end"])))
    assert [(int(m["data-start"]), int(m["data-end"]), m["data-label"]) for m in marks] == [(e["start"], e["end"], e["label"]) for e in entities]
    assert [m["text"] for m in marks] == [text[e["start"]:e["end"]] for e in entities]  # the unescaped text comes back
    assert [m["tag"] for m in marks] == [e["label"] for e in entities]  # the label is written on each highlight
    assert marks[0]["title"] == 'person <x> "y" 0.91'
    colours = label_colours(e["label"] for e in entities)
    assert len(set(colours.values())) == 4
    assert all(colours[m["data-label"]] in m["style"] for m in marks)
    assert "<b>" not in html_text and "<x>" not in html_text and "Demo &lt;page&gt;" in html_text
    assert sum(1 for tag, attributes in page.tags if tag == "p" and attributes.get("class") == "text") == 3  # 2 layers + 1
    assert_self_contained(page)


def test_label_counts_table():
    documents = [("a b c", [{"start": 0, "end": 1, "label": "x"}, {"start": 2, "end": 3, "label": "y"}]),
                 ("d", [{"start": 0, "end": 1, "label": "x"}])]
    html_text = render_label_counts(documents)
    assert "x</td><td class=\"number\">2</td>" in html_text and "y</td><td class=\"number\">1</td>" in html_text


def test_report_documents_in_characters(tmp_path):
    path = tmp_path / "tiny.tsv"
    path.write_text(IOB_TEXT)
    gold = load_gold(str(path), label_map={"Chemical": "chemical", "Disease": "disease"})
    documents = report_documents(gold, [[(2, 4, "disease"), (1, 2, "chemical")], []], 5)
    assert documents[0] == {
        "id": "0", "text": "Aspirin causes heart failure .",
        "gold": [{"start": 0, "end": 7, "label": "chemical"}, {"start": 15, "end": 28, "label": "disease"}],
        "predicted": [{"start": 8, "end": 14, "label": "chemical"}, {"start": 15, "end": 28, "label": "disease"}],
    }
    assert documents[1] == {"id": "1", "text": "No entities", "gold": [], "predicted": []}
    assert len(report_documents(gold, [[], []], 1)) == 1


def test_evaluation_page_tables_curves_and_marked_documents(tmp_path):
    path = tmp_path / "tiny.tsv"
    path.write_text(IOB_TEXT)
    gold = load_gold(str(path), label_map={"Chemical": "chemical", "Disease": "disease"})
    predictions = {0.3: [[(0, 1, "chemical"), (2, 3, "disease")], [(0, 1, "disease")]], 0.6: [[(0, 1, "chemical")], []]}
    result = evaluate_predictions(gold, predictions[0.6], name="tiny </script> set")
    result["threshold_curve"] = threshold_curve(gold.spans, predictions)
    results = {"name": "demo", "model": "m", "base_model": "m", "threshold": 0.6, "flat_ner": True, "few_shot": None,
               "datasets": [result], "overall": pool_results([result])}
    documents = report_documents(gold, predictions[0.6], 5)
    html_text = render_evaluation_report(results, {result["name"]: documents})
    page = HtmlPage(html_text)

    curves = json.loads(page.scripts[CURVES_ID])
    assert curves == curves_data(results) == {"overall": results["overall"]["threshold_curve"], "datasets": {"tiny </script> set": result["threshold_curve"]}}
    assert [point["f1"] for point in curves["datasets"]["tiny </script> set"]["points"]] == pytest.approx([0.4, 2 / 3])  # P 1/3 R 1/2; P 1 R 1/2
    assert html_text.count("<polyline") == 3 and "best F1 66.67 at 0.6" in html_text

    # predictions marked correct or false, gold marked found or missed, on the right document
    predicted = [(m["document"]["data-id"], int(m["data-start"]), int(m["data-end"]), m["data-label"], m["class"]) for m in page.marks
                 if m["class"].split()[1] in ("correct", "false")]
    assert predicted == [("0", 0, 7, "chemical", "entity correct")]
    missed = [(m["document"]["data-id"], m["data-label"], m["class"]) for m in page.marks if m["class"].split()[1] in ("found", "missed")]
    assert missed == [("0", "chemical", "entity found"), ("0", "disease", "entity missed")]
    assert "<td>tiny &lt;/script&gt; set</td>" in html_text and "<td>chemical</td>" in html_text
    assert '<td class="number">100.00</td><td class="number">50.00</td><td class="number">66.67</td>' in html_text  # strict P, R, F1
    assert_self_contained(page)


def test_several_datasets_get_a_pooled_table_per_type(tmp_path):
    path = tmp_path / "tiny.tsv"
    path.write_text(IOB_TEXT)
    gold = load_gold(str(path), label_map={"Chemical": "chemical", "Disease": "disease"})
    first = evaluate_predictions(gold, [[(0, 1, "chemical"), (2, 3, "disease")], [(0, 1, "disease")]], name="first")
    second = evaluate_predictions(gold, [[(0, 1, "chemical")], []], name="second")
    results = {"name": "demo", "model": "m", "base_model": "m", "threshold": 0.5, "flat_ner": True, "few_shot": None,
               "datasets": [first, second], "overall": pool_results([first, second])}
    html_text = render_evaluation_report(results)
    pooled = html_text.split("All datasets pooled: per type")[1].split("<h3>")[0]
    chemical = results["overall"]["micro"]["strict"]["per_type"]["chemical"]
    assert chemical["support"] == first["strict"]["per_type"]["chemical"]["support"] * 2 and chemical["tp"] == 2
    assert f'<td>chemical</td><td class="number">{chemical["support"]}</td><td class="number">2</td><td class="number">100.00</td>' in pooled
    assert "All datasets pooled" not in render_evaluation_report({**results, "datasets": [first], "overall": pool_results([first])})
