"""The evaluation job: pure logic (gliner/evaluation/gold.py, evaluation.py, few_shot.py, report.py) on hand-made predictions
with exact numbers, config and flag handling, and the job end to end on a local Ray with the tiny models (IOB and
PubTator, few-shot)."""
import json
import re
from pathlib import Path

import pytest
import torch
from conftest import HtmlPage

from gliner import GLiNER
from gliner.decoding import Span
from gliner.evaluation.scoring import entities_to_spans, evaluate_predictions, pool_results, predict, report_documents, score_predictions, word_spans_to_exclusive
from gliner.evaluation.few_shot import sample_few_shot
from gliner.evaluation.gold import infer_format, load_gold, map_gold_spans, parse_label_map, resolve_labels
from gliner.evaluation.html_report import CURVES_ID
from gliner.evaluation.iob import read_iob
from gliner.model_path import check_model_path
from gliner.evaluation.report import format_markdown
from ray_jobs.evaluate import DEFAULT_SWEEP, EvaluateConfig, main, merged_label_map, parse_args, run

IOB_TEXT = """-DOCSTART-\tO

Aspirin\tB-Chemical
causes\tO
heart\tB-Disease
failure\tI-Disease
.\tO

Mice\tB-Species
with\tO
diabetes\tB-Disease
.\tO

No\tO
entities\tO
"""

TITLE = "Cisplatin nephrotoxicity in mice."
ABSTRACT = "Renal failure and breast cancer were seen."
PUBTATOR_TEXT = (
    f"1|t|{TITLE}\n1|a|{ABSTRACT}\n"
    "1\t0\t9\tCisplatin\tChemical\tD1\n"
    "1\t10\t24\tnephrotoxicity\tSpecificDisease\tD2\n"
    "1\t10\t24\tnephrotoxicity\tModifier\tD2\n"  # the same span under another type: one gold "disease" mention
    "1\t34\t47\tRenal failure\tDiseaseClass\tD3\n"
    "1\t52\t65\tbreast cancer\tSpecificDisease\tD4\n"
    "\n"
    "2|t|Nothing here.\n2|a|Still nothing.\n"
)
DISEASE_MAP = {"SpecificDisease": "disease", "DiseaseClass": "disease", "CompositeMention": "disease", "Modifier": "disease"}


@pytest.fixture
def iob_file(tmp_path):
    path = tmp_path / "tiny.tsv"
    path.write_text(IOB_TEXT)
    return path


@pytest.fixture
def pubtator_file(tmp_path):
    path = tmp_path / "tiny.pubtator"
    path.write_text(PUBTATOR_TEXT)
    return path


# ----------------------------------------------------------------------------------------------- pure logic
def test_gold_label_map_drops_and_counts_unmapped_types(iob_file):
    gold = load_gold(str(iob_file), label_map={"Chemical": "chemical", "Disease": "disease"})
    assert gold.format == "iob" and gold.unit == "sentence"
    assert gold.inputs == [["Aspirin", "causes", "heart", "failure", "."], ["Mice", "with", "diabetes", "."], ["No", "entities"]]
    # end exclusive, mapped labels, the Species mention ignored and counted
    assert gold.spans == [[(0, 1, "chemical"), (2, 4, "disease")], [(2, 3, "disease")], []]
    assert gold.ignored == {"Species": 1}
    assert gold.labels == ["chemical", "disease"]  # default: sorted unique mapped labels
    assert gold.gold_mentions == 3 and gold.gold_per_label() == {"chemical": 1, "disease": 2}

    only_disease = load_gold(str(iob_file), label_map={"Disease": "disease"}, max_documents=2)
    assert only_disease.spans == [[(2, 4, "disease")], [(2, 3, "disease")]]
    assert only_disease.ignored == {"Chemical": 1, "Species": 1}
    assert (only_disease.total_documents, len(only_disease.spans)) == (3, 2)

    # no label map: gold types are the labels; with labels given, other types are ignored
    identity = load_gold(str(iob_file))
    assert identity.labels == ["Chemical", "Disease", "Species"] and identity.ignored == {}
    assert load_gold(str(iob_file), labels=["Disease"]).ignored == {"Chemical": 1, "Species": 1}
    # explicit labels win (an extra label only adds chances for false positives)
    assert load_gold(str(iob_file), label_map={"Disease": "disease"}, labels=["disease", "gene"]).labels == ["disease", "gene"]


def test_pubtator_gold_character_spans_and_duplicates(pubtator_file):
    gold = load_gold(str(pubtator_file), label_map=DISEASE_MAP)
    assert gold.format == "pubtator" and gold.ids == ["1", "2"]
    assert gold.inputs[0] == TITLE + " " + ABSTRACT
    assert gold.spans == [[(10, 24, "disease"), (34, 47, "disease"), (52, 65, "disease")], []]
    assert gold.ignored == {"Chemical": 1}
    assert gold.duplicates == 1  # SpecificDisease + Modifier on the same span, both mapped to "disease"
    assert gold.offset_mismatches == 0
    text = gold.inputs[0]
    assert [text[s:e] for s, e, _ in gold.spans[0]] == ["nephrotoxicity", "Renal failure", "breast cancer"]


def test_jsonl_gold_asks_each_document_for_its_own_labels_and_scores_only_those(tmp_path, tiny_uni_dir):
    """GLiNER-format JSONL with a label set per document: renamed by the label map, the model asked for each
    document's own labels (with its descriptions), gold mentions of other labels ignored and counted."""
    records = [
        {"tokenized_text": ["Aspirin", "causes", "heart", "failure", "."], "ner": [[0, 0, "Chemical"], [2, 3, "Disease"]], "types": ["Disease"]},
        {"tokenized_text": ["Mice", "with", "diabetes", "lack", "BRCA1", "."], "ner": [[2, 2, "Disease"], [4, 4, "Gene"]],
         "types": {"Disease": "illness", "Gene": "gene or protein"}},
        {"tokenized_text": ["BRCA1", "is", "a", "gene", "and", "aspirin", "a", "drug"], "ner": [[0, 0, "Gene"], [5, 5, "Chemical"]]},
        {"tokenized_text": ["No", "entities", "here"], "ner": [], "types": ["Species"]},  # maps to no label: asked for nothing
    ]
    path = tmp_path / "own.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in records) + "\n")
    label_map = {"Chemical": "chemical", "Disease": "disease", "Gene": "gene"}
    gold = load_gold(str(path), label_map=label_map, labels_column="types")
    assert (gold.format, gold.unit, gold.total_documents, gold.ids) == ("jsonl", "sentence", 4, ["0", "1", "2", "3"])
    assert gold.label_sets == [["disease"], {"disease": "illness", "gene": "gene or protein"}, ["chemical", "disease", "gene"], []]
    assert gold.spans == [[(2, 4, "disease")], [(2, 3, "disease"), (4, 5, "gene")], [(0, 1, "gene"), (5, 6, "chemical")], []]
    assert gold.ignored == {"Chemical": 1} and gold.labels == ["chemical", "disease", "gene"]
    assert load_gold(str(path), label_map=label_map).label_sets is None  # without the column: one label set

    model = GLiNER.from_pretrained(tiny_uni_dir)
    found = predict(model, gold, 0.2, descriptions={"chemical": "drug"})
    asked = [["disease"], {"disease": "illness", "gene": "gene or protein"}, {"chemical": "drug", "disease": "disease", "gene": "gene"}]
    alone = [word_spans_to_exclusive(model.predict_word_spans([words], labels, threshold=0.2))[0] for words, labels in zip(gold.inputs, asked)]
    assert found == alone + [[]] and sum(map(len, alone)) >= 3
    assert all({label for _, _, label in spans} <= set(labels) for spans, labels in zip(found, gold.label_sets))
    result = evaluate_predictions(gold, found)
    assert result["label_sets"] == 4 and result["ignored_gold_mentions"] == {"Chemical": 1} and result["gold_mentions"] == 5

    path.write_text(json.dumps(records[0]) + "\n" + json.dumps({"tokenized_text": ["a"], "ner": [[0, 3, "X"]]}) + "\n")
    with pytest.raises(ValueError, match="line 2: not a GLiNER example"):
        load_gold(str(path))
    path.write_text(json.dumps({**records[0], "types": "Disease"}) + "\n")
    with pytest.raises(ValueError, match="document 0: labels must be a list"):
        load_gold(str(path), labels_column="types")
    with pytest.raises(ValueError, match="only JSONL records have fields"):
        load_gold(str(tmp_path / "x.tsv"), labels_column="types")


def test_exact_scores_from_hand_made_word_predictions(iob_file):
    gold = load_gold(str(iob_file), label_map={"Chemical": "chemical", "Disease": "disease"})
    # as predict_word_spans returns them: inclusive ends
    predicted = [
        [Span(0, 0, "chemical", 0.9), Span(2, 2, "disease", 0.8)],  # exact chemical; disease cut short (relaxed only)
        [Span(2, 2, "chemical", 0.7)],  # right span, wrong label
        [Span(0, 0, "disease", 0.6)],  # spurious
    ]
    pred = word_spans_to_exclusive(predicted)
    assert pred == [[(0, 1, "chemical"), (2, 3, "disease")], [(2, 3, "chemical")], [(0, 1, "disease")]]
    result = evaluate_predictions(gold, pred, name="tiny")
    assert (result["documents"], result["gold_mentions"], result["predicted_mentions"]) == (3, 3, 4)
    assert result["ignored_gold_mentions"] == {"Species": 1}

    strict = result["strict"]
    assert (strict["tp"], strict["fp"], strict["fn"]) == (1, 3, 2)
    assert (strict["precision"], strict["recall"], strict["f1"]) == pytest.approx((1 / 4, 1 / 3, 2 / 7))
    chemical, disease = strict["per_type"]["chemical"], strict["per_type"]["disease"]
    assert (chemical["tp"], chemical["fp"], chemical["fn"], chemical["support"]) == (1, 1, 0, 1)
    assert (chemical["precision"], chemical["recall"], chemical["f1"]) == pytest.approx((1 / 2, 1.0, 2 / 3))
    assert (disease["tp"], disease["fp"], disease["fn"], disease["f1"]) == (0, 2, 2, 0.0)
    assert strict["macro_f1"] == pytest.approx(1 / 3)

    relaxed = result["relaxed"]
    assert (relaxed["tp"], relaxed["fp"], relaxed["fn"]) == (2, 2, 1)
    assert (relaxed["precision"], relaxed["recall"], relaxed["f1"]) == pytest.approx((1 / 2, 2 / 3, 4 / 7))
    assert relaxed["per_type"]["disease"]["f1"] == pytest.approx(1 / 2)
    assert relaxed["macro_f1"] == pytest.approx((2 / 3 + 1 / 2) / 2)

    with pytest.raises(ValueError, match="3 gold documents"):
        evaluate_predictions(gold, pred[:2])


def test_exact_scores_from_hand_made_character_predictions(pubtator_file):
    gold = load_gold(str(pubtator_file), label_map=DISEASE_MAP)
    entities = [
        [
            {"start": 10, "end": 24, "text": "nephrotoxicity", "label": "disease", "score": 0.9},
            {"start": 34, "end": 39, "text": "Renal", "label": "disease", "score": 0.8},
        ],
        [{"start": 0, "end": 7, "text": "Nothing", "label": "disease", "score": 0.7}],
    ]
    pred = entities_to_spans(entities)
    assert pred == [[(10, 24, "disease"), (34, 39, "disease")], [(0, 7, "disease")]]
    scores = score_predictions(gold.spans, pred)
    assert (scores["strict"]["tp"], scores["strict"]["fp"], scores["strict"]["fn"]) == (1, 2, 2)
    assert scores["strict"]["f1"] == pytest.approx(2 * (1 / 3) * (1 / 3) / (2 / 3))
    assert (scores["relaxed"]["tp"], scores["relaxed"]["fp"], scores["relaxed"]["fn"]) == (2, 1, 1)
    assert scores["relaxed"]["f1"] == pytest.approx(2 / 3)


def test_overall_pools_micro_and_averages_dataset_f1(iob_file, pubtator_file):
    first = evaluate_predictions(load_gold(str(iob_file), label_map={"Chemical": "chemical", "Disease": "disease"}),
                                 [[(0, 1, "chemical"), (2, 3, "disease")], [(2, 3, "chemical")], [(0, 1, "disease")]], name="a")
    second = evaluate_predictions(load_gold(str(pubtator_file), label_map=DISEASE_MAP),
                                  [[(10, 24, "disease"), (34, 39, "disease")], [(0, 7, "disease")]], name="b")
    overall = pool_results([first, second])
    strict = overall["micro"]["strict"]
    assert (strict["tp"], strict["fp"], strict["fn"]) == (1 + 1, 3 + 2, 2 + 2)
    assert (strict["precision"], strict["recall"]) == pytest.approx((2 / 7, 2 / 6))
    assert strict["f1"] == pytest.approx(2 * (2 / 7) * (2 / 6) / (2 / 7 + 2 / 6))
    assert strict["per_type"]["disease"]["tp"] == 1 and strict["per_type"]["disease"]["support"] == 2 + 3
    assert overall["macro"]["strict"]["f1"] == pytest.approx((2 / 7 + 1 / 3) / 2)
    relaxed = overall["micro"]["relaxed"]
    assert (relaxed["tp"], relaxed["fp"], relaxed["fn"]) == (4, 3, 2)
    assert overall["macro"]["relaxed"]["f1"] == pytest.approx((4 / 7 + 2 / 3) / 2)
    assert (overall["documents"], overall["gold_mentions"], overall["datasets"]) == (5, 6, 2)

    markdown = format_markdown({"datasets": [first, second], "overall": overall})
    assert "| a | 3 | 3 | 25.00 | 33.33 | 28.57 | 57.14 | 33.33 |" in markdown
    assert "all (micro, pooled)" in markdown and "all (macro over datasets)" in markdown
    assert "ignored gold mentions (type not in the label map): Species 1" in markdown


def test_few_shot_sampling_is_seeded_and_maps_labels():
    examples = [{"tokenized_text": [f"w{i}", "x"], "ner": [[0, 0, "Disease" if i % 2 else "Chemical"]]} for i in range(20)]
    examples += [{"tokenized_text": ["empty"], "ner": []} for _ in range(20)]
    first = sample_few_shot(examples, 4, seed=3, label_map={"Disease": "disease"})
    assert first == sample_few_shot(examples, 4, seed=3, label_map={"Disease": "disease"})
    assert first != sample_few_shot(examples, 4, seed=4, label_map={"Disease": "disease"})
    assert len(first) == 4
    assert all(example["ner"] == [[0, 0, "disease"]] and example["ner_labels"] == ["disease"] for example in first)
    with pytest.raises(ValueError, match="only 10 eligible"):
        sample_few_shot(examples, 11, seed=0, label_map={"Disease": "disease"})
    assert len(sample_few_shot(examples, 11, seed=0, label_map={"Disease": "disease"}, only_with_entities=False)) == 11


def test_small_helpers_and_their_errors(tmp_path):
    assert infer_format("a/b/test.tsv") == "iob" and infer_format("x.pubtator") == "pubtator"
    assert infer_format("x.txt", "pubtator") == "pubtator"
    with pytest.raises(ValueError, match="cannot tell the format"):
        infer_format("x.txt")
    assert parse_label_map("Chemical=chemical, cell_line=cell line") == {"Chemical": "chemical", "cell_line": "cell line"}
    with pytest.raises(ValueError, match="GoldType=label"):
        parse_label_map("Chemical")
    assert resolve_labels({"A": "x", "B": "x", "C": "y"}, None) == ["x", "y"]
    spans, ignored, duplicates = map_gold_spans([[(0, 1, "A"), (0, 1, "B"), (2, 3, "Z")]], {"A": "x", "B": "x"})
    assert (spans, ignored, duplicates) == ([[(0, 1, "x")]], {"Z": 1}, 1)
    with pytest.raises(FileNotFoundError, match="dataset file not found"):
        load_gold(str(tmp_path / "missing.tsv"))
    with pytest.raises(FileNotFoundError, match="model directory not found"):
        check_model_path(str(tmp_path / "no_model"))
    check_model_path("Ihor/gliner-biomed-base-v1.0")  # a hub id is left to the loader


# ----------------------------------------------------------------------------------------------- config and flags
def test_config_file_flags_and_unknown_keys(tmp_path, iob_file, pubtator_file):
    path = tmp_path / "eval.yaml"
    path.write_text(
        f"model: m\noutput: {tmp_path}/out\ndatasets:\n"
        f"  - path: {iob_file}\n    label_map: {{Disease: disease}}\n"
        f"  - name: pub\n    path: {pubtator_file}\n    label_map: {{SpecificDisease: disease}}\n    max_documents: 1\n"
    )
    config, address = parse_args(["--config", str(path), "threshold=0.25", "flat_ner=false"])
    assert address is None and (config.threshold, config.flat_ner) == (0.25, False)
    assert config.sweep_thresholds == DEFAULT_SWEEP and config.report_documents == 5
    assert parse_args(["--config", str(path), "sweep_thresholds=[0.5, 0.1, 0.5]"])[0].sweep_thresholds == [0.1, 0.5]
    with pytest.raises(ValueError, match="sweep thresholds must lie in"):
        parse_args(["--config", str(path), "sweep_thresholds=[0.5, 1.5]"])
    assert [(d.name, d.format) for d in config.datasets] == [(f"{tmp_path.name}/tiny", "iob"), ("pub", "pubtator")]
    assert merged_label_map(config.datasets) == {"Disease": "disease", "SpecificDisease": "disease"}

    for bad, key in [(["thresold=0.3"], "thresold"), (["few_shot.kk=3"], "kk")]:
        with pytest.raises(ValueError, match=key):
            parse_args(["--config", str(path), *bad])
    path.write_text(path.read_text().replace("    max_documents: 1\n", "    max_docs: 1\n"))
    with pytest.raises(ValueError, match="max_docs"):
        parse_args(["--config", str(path)])
    with pytest.raises(ValueError, match="threshold"):
        parse_args(["--model", "m", "--dataset", str(iob_file), "--threshold", "1.5"])
    with pytest.raises(ValueError, match="cannot tell the format"):
        parse_args(["--model", "m", "--dataset", str(tmp_path / "x.txt")])
    with pytest.raises(ValueError, match="give --dataset"):
        parse_args(["--model", "m", "--labels", "a"])

    flags, _ = parse_args(["--model", "m", "--dataset", str(pubtator_file), "--labels", "disease,chemical", "--label-map",
                           "SpecificDisease=disease,Chemical=chemical", "--name", "mine", "--max-documents", "5",
                           "--few-shot-k", "8", "--few-shot-train", str(iob_file), "--few-shot-steps", "3"])
    dataset = flags.datasets[0]
    assert (dataset.name, dataset.format, dataset.labels, dataset.max_documents) == ("mine", "pubtator", ["disease", "chemical"], 5)
    assert dataset.label_map == {"SpecificDisease": "disease", "Chemical": "chemical"}
    assert (flags.few_shot.k, flags.few_shot.steps, flags.few_shot.seed, flags.output) == (8, 3, 0, "outputs/evaluate/gliner-evaluate")


def test_bad_paths_fail_before_ray_with_clear_errors(tmp_path, iob_file, tiny_uni_dir, capsys):
    missing = tmp_path / "nope" / "test.tsv"
    config = EvaluateConfig(model=str(tiny_uni_dir), output=str(tmp_path / "o"), datasets=[{"path": str(missing)}])
    with pytest.raises(FileNotFoundError, match=re.escape(f"dataset file not found: {missing}")):
        run(config)
    config = EvaluateConfig(model=str(tmp_path / "no_model"), output=str(tmp_path / "o"), datasets=[{"path": str(iob_file)}])
    with pytest.raises(FileNotFoundError, match="model directory not found"):
        run(config)
    assert main(["--model", str(tiny_uni_dir), "--dataset", str(missing), "--output", str(tmp_path / "o")]) == 2
    assert f"dataset file not found: {missing}" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------- on a local Ray
def _count_iob(path: Path, types: set[str], max_sentences: int) -> tuple[int, int]:
    """Sentences and B- tags of `types` in the first sentences, counted without gliner's reader."""
    sentences, mentions, in_sentence = 0, 0, False
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("-DOCSTART-"):
            in_sentence = False
            continue
        if not in_sentence:
            if sentences == max_sentences:
                break
            sentences, in_sentence = sentences + 1, True
        tag = line.split("\t")[1]
        mentions += tag.startswith("B-") and tag[2:] in types
    return sentences, mentions


def _count_pubtator(path: Path, types: set[str], max_documents: int) -> tuple[int, int]:
    pmids, spans = [], set()
    for line in path.read_text().splitlines():
        if "|t|" in line:
            pmids.append(line.split("|")[0])
        fields = line.split("\t")
        if len(fields) >= 5 and fields[0] in pmids[:max_documents] and fields[4] in types:
            spans.add((fields[0], fields[1], fields[2]))
    return min(len(pmids), max_documents), len(spans)


@pytest.mark.ray
def test_flags_only_iob_end_to_end(local_ray, tmp_path, data_dir, tiny_uni_dir, capsys):
    dataset = data_dir / "bioner-iob/BC5CDR/test.tsv"
    out = tmp_path / "iob"
    code = main(["--model", str(tiny_uni_dir), "--dataset", str(dataset), "--labels", "disease", "--label-map", "Disease=disease",
                 "--output", str(out), "--max-documents", "25", "--threshold", "0.5", "--name", "bc5cdr-disease"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| dataset | documents | gold mentions |" in printed and "| bc5cdr-disease | 25 |" in printed

    results = json.loads((out / "results.json").read_text())
    result = results["datasets"][0]
    sentences, diseases = _count_iob(dataset, {"Disease"}, 25)
    _, chemicals = _count_iob(dataset, {"Chemical"}, 25)
    assert (result["documents"], result["gold_mentions"]) == (sentences, diseases) == (25, diseases)
    assert diseases > 0 and result["ignored_gold_mentions"] == {"Chemical": chemicals}
    assert result["labels"] == ["disease"] and result["format"] == "iob" and result["unit"] == "sentence"
    for mode in ("strict", "relaxed"):
        scores = result[mode]
        assert scores["tp"] + scores["fn"] == diseases and scores["tp"] + scores["fp"] == result["predicted_mentions"]
    assert results["overall"]["micro"]["strict"]["tp"] == result["strict"]["tp"]
    assert results["overall"]["macro"]["strict"]["f1"] == pytest.approx(result["strict"]["f1"])
    assert results["few_shot"] is None and results["model"] == str(tiny_uni_dir)
    assert "Threshold sweep (0.05 to 0.95, 19 thresholds, strict micro)" in (out / "results.md").read_text()
    assert "best strict F1 over the sweep" in printed

    markdown = (out / "results.md").read_text()
    assert f"| bc5cdr-disease | 25 | {diseases} |" in markdown and "### bc5cdr-disease" in markdown
    summary = json.loads((out / "_SUMMARY.json").read_text())
    assert summary["counts"]["documents"] == 25 and summary["counts"]["gold_mentions"] == diseases
    assert summary["outputs"]["report_html"].endswith("report.html")
    assert summary["counts"]["per_dataset"]["bc5cdr-disease"]["ignored_gold_mentions"] == {"Chemical": chemicals}
    assert set(summary["versions"]) >= {"ray", "torch", "transformers"}
    assert summary["timings"]["per_dataset"]["bc5cdr-disease"]["predict"] >= 0
    assert summary["config"]["datasets"][0]["path"] == str(dataset)
    assert_threshold_sweep(results, str(dataset), tiny_uni_dir)
    assert_report_page(out / "report.html", results, str(dataset), tiny_uni_dir)


def predictions_like_the_task(model_dir: Path, gold, thresholds: list[float]) -> dict[float, list]:
    """`predict` at each threshold, run here as the job's task runs it (one torch thread), so the numbers match bit for bit."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = GLiNER.from_pretrained(model_dir)
        return {threshold: predict(model, gold, threshold=threshold) for threshold in thresholds}
    finally:
        torch.set_num_threads(threads)


def assert_threshold_sweep(results: dict, dataset: str, model_dir: Path) -> None:
    """The default sweep in results.json, per dataset and pooled; its points equal separate evaluations."""
    result = results["datasets"][0]
    curve = result["threshold_curve"]
    assert results["sweep_thresholds"] == DEFAULT_SWEEP == [point["threshold"] for point in curve["points"]]
    assert results["overall"]["threshold_curve"] == curve  # one dataset: the pooled curve is its own
    assert curve["best"]["f1"] == max(point["f1"] for point in curve["points"])
    counts = ("precision", "recall", "f1", "tp", "fp", "fn")
    at_threshold = next(point for point in curve["points"] if point["threshold"] == results["threshold"])
    assert {key: at_threshold[key] for key in counts} == {key: result["strict"][key] for key in counts}
    gold = load_gold(dataset, label_map={"Disease": "disease"}, labels=["disease"], max_documents=25)
    for threshold, predictions in predictions_like_the_task(model_dir, gold, [0.05, 0.45, 0.55]).items():
        separate = evaluate_predictions(gold, predictions)["strict"]
        point = next(point for point in curve["points"] if point["threshold"] == threshold)
        assert {key: point[key] for key in counts} == {key: separate[key] for key in counts}


def assert_report_page(path: Path, results: dict, dataset: str, model_dir: Path) -> None:
    """report.html: the curves' JSON is results.json's, the first 5 sentences show every predicted entity and every
    gold mention with its label, and nothing is loaded from elsewhere."""
    page = HtmlPage(path.read_text())
    result = results["datasets"][0]
    assert json.loads(page.scripts[CURVES_ID]) == {"overall": results["overall"]["threshold_curve"], "datasets": {result["name"]: result["threshold_curve"]}}
    gold = load_gold(dataset, label_map={"Disease": "disease"}, labels=["disease"], max_documents=25)
    expected = report_documents(gold, predictions_like_the_task(model_dir, gold, [results["threshold"]])[results["threshold"]], 5)
    for kind, statuses in (("predicted", {"correct", "false"}), ("gold", {"found", "missed"})):
        shown = [(mark["document"]["data-id"], int(mark["data-start"]), int(mark["data-end"]), mark["data-label"], mark["tag"])
                 for mark in page.marks if set(mark["class"].split()) & statuses]
        entities = [(document["id"], e["start"], e["end"], e["label"], e["label"]) for document in expected for e in document[kind]]
        assert sorted(shown) == sorted(entities)
    assert sum(len(document["gold"]) for document in expected) > 0
    assert not [attributes for _, attributes in page.tags if "src" in attributes or "href" in attributes]


@pytest.mark.ray
def test_flags_only_pubtator_and_two_datasets_as_ray_tasks(local_ray, tmp_path, data_dir, tiny_bi_dir):
    pubtator = data_dir / "ncbi-disease-pubtator/test.pubtator"
    out = tmp_path / "pub"
    assert main(["--model", str(tiny_bi_dir), "--dataset", str(pubtator), "--labels", "disease", "sweep_thresholds=[]",
                 "--label-map", ",".join(f"{t}=disease" for t in DISEASE_MAP), "--output", str(out), "--max-documents", "3"]) == 0
    result = json.loads((out / "results.json").read_text())["datasets"][0]
    assert "threshold_curve" not in result  # no sweep: no curve, none on the page either
    page = HtmlPage((out / "report.html").read_text())
    first_pmids = [line.split("|")[0] for line in pubtator.read_text().splitlines() if "|t|" in line][:3]
    assert CURVES_ID not in page.scripts
    assert [attributes["data-id"] for tag, attributes in page.tags if tag == "div" and "data-id" in attributes] == first_pmids
    documents, mentions = _count_pubtator(pubtator, set(DISEASE_MAP), 3)
    assert (result["documents"], result["gold_mentions"]) == (documents, mentions) == (3, mentions)
    assert result["format"] == "pubtator" and result["ignored_gold_mentions"] == {} and result["gold_offset_mismatches"] == 0
    assert result["strict"]["tp"] + result["strict"]["fn"] == mentions

    # a config with three datasets: three Ray tasks, pooled overall; the JSONL one asks each sentence for its own labels
    own = tmp_path / "own.jsonl"
    examples = read_iob(data_dir / "bioner-iob/JNLPBA/test.tsv")[:12]
    types = [["protein"], {"cell_type": "cell type or lineage", "protein": "protein"}, None]
    own.write_text("".join(json.dumps({**example, **({"types": types[index % 3]} if types[index % 3] else {})}) + "\n"
                           for index, example in enumerate(examples)))
    config = EvaluateConfig.model_validate({
        "model": str(tiny_bi_dir), "output": str(tmp_path / "two"), "threshold": 0.3, "torch_threads": 1, "sweep_thresholds": [0.3, 0.6],
        "datasets": [
            {"name": "ncbi-pub", "path": str(pubtator), "label_map": {"SpecificDisease": "disease"}, "max_documents": 2},
            {"name": "jnlpba", "path": str(data_dir / "bioner-iob/JNLPBA/test.tsv"), "max_documents": 10,
             "label_map": {"protein": "protein", "cell_line": "cell line", "cell_type": "cell type"},
             "label_descriptions": {"cell line": "immortalized cell line", "protein": "protein or peptide"}},
            {"name": "jnlpba-own", "path": str(own), "format": "jsonl", "labels_column": "types", "label_map": {"protein": "protein", "cell_type": "cell type"}},
        ],
    })
    results = run(config)["results"]
    by_name = {r["name"]: r for r in results["datasets"]}
    assert set(by_name) == {"ncbi-pub", "jnlpba", "jnlpba-own"}
    own_gold = load_gold(str(own), "jsonl", {"protein": "protein", "cell_type": "cell type"}, None, None, "types")
    own_direct = predict(GLiNER.from_pretrained(tiny_bi_dir), own_gold, 0.3)
    assert by_name["jnlpba-own"]["strict"] == evaluate_predictions(own_gold, own_direct)["strict"] and by_name["jnlpba-own"]["label_sets"] == 3
    assert by_name["jnlpba-own"]["documents"] == 12 and by_name["jnlpba-own"]["gold_mentions"] == own_gold.gold_mentions > 0
    assert by_name["jnlpba"]["labels"] == ["cell line", "cell type", "protein"]  # scored by label; the model read the descriptions
    jnlpba = config.datasets[1]
    gold = load_gold(jnlpba.path, "iob", jnlpba.label_map, None, 10)
    direct = predict(GLiNER.from_pretrained(tiny_bi_dir), gold, 0.3, descriptions=jnlpba.label_descriptions)
    assert by_name["jnlpba"]["strict"] == evaluate_predictions(gold, direct)["strict"] and by_name["jnlpba"]["label_descriptions"] == jnlpba.label_descriptions
    with pytest.raises(ValueError, match=r"label_descriptions name \['cell'\]"):
        predict(GLiNER.from_pretrained(tiny_bi_dir), gold, 0.3, descriptions={"cell": "a cell"})
    assert set(by_name["jnlpba"]["ignored_gold_mentions"]) <= {"DNA", "RNA"}
    assert set(by_name["ncbi-pub"]["ignored_gold_mentions"]) <= {"DiseaseClass", "Modifier", "CompositeMention"}
    overall = results["overall"]
    assert overall["micro"]["strict"]["tp"] + overall["micro"]["strict"]["fn"] == sum(r["gold_mentions"] for r in results["datasets"])
    assert overall["macro"]["strict"]["f1"] == pytest.approx(sum(r["strict"]["f1"] for r in results["datasets"]) / 3)
    pooled_at_03 = overall["threshold_curve"]["points"][0]
    assert (pooled_at_03["threshold"], pooled_at_03["tp"], pooled_at_03["fp"]) == (0.3, overall["micro"]["strict"]["tp"], overall["micro"]["strict"]["fp"])
    assert [point["threshold"] for point in overall["threshold_curve"]["points"]] == [0.3, 0.6]
    assert (tmp_path / "two" / "results.md").exists()


@pytest.mark.ray
def test_few_shot_fine_tunes_then_evaluates(local_ray, tmp_path, data_dir, tiny_uni_dir):
    out = tmp_path / "fs"
    code = main(["--model", str(tiny_uni_dir), "--dataset", str(data_dir / "bioner-iob/BC5CDR/test.tsv"),
                 "--label-map", "Chemical=chemical,Disease=disease", "--output", str(out), "--max-documents", "10",
                 "--few-shot-k", "8", "--few-shot-train", str(data_dir / "bioner-iob/BC5CDR/train.tsv"),
                 "--few-shot-steps", "2", "--few-shot-seed", "5", "few_shot.torch_threads=1", "few_shot.micro_batch_size=4"])
    assert code == 0
    final = out / "few_shot_8_seed5" / "final_model"
    assert (final / "gliner_config.json").exists() and (final / "model.safetensors").exists()
    assert not (final / "deepspeed").exists()
    sampled = json.loads((out / "few_shot_8_seed5" / "train.json").read_text())
    assert len(sampled) == 8 and all(ex["ner"] and set(ex["ner_labels"]) == {"chemical", "disease"} for ex in sampled)

    results = json.loads((out / "results.json").read_text())
    assert (results["few_shot"]["k"], results["few_shot"]["seed"], results["few_shot"]["steps"]) == (8, 5, 2)
    assert results["few_shot"]["final_metrics"]["step"] == 2
    assert results["model"] == str(final) and results["base_model"] == str(tiny_uni_dir)
    result = results["datasets"][0]
    assert result["documents"] == 10 and result["labels"] == ["chemical", "disease"]
    assert result["gold_mentions"] == sum(_count_iob(data_dir / "bioner-iob/BC5CDR/test.tsv", {t}, 10)[1] for t in ("Chemical", "Disease"))


def test_evaluation_library_never_imports_ray():
    import subprocess
    import sys

    code = ("import sys, gliner.evaluation.gold, gliner.evaluation.scoring, gliner.evaluation.few_shot, gliner.evaluation.report, gliner.evaluation.html_documents, gliner.evaluation.html_report; "
            "sys.exit(1 if 'ray' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
