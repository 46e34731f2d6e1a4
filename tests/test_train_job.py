"""The training job on a real local Ray: 2 Ray Train workers, DeepSpeed ZeRO-2 over gloo, tiny model."""
import json

import pytest
from safetensors import safe_open

from gliner import GLiNER
from gliner.evaluation.iob import read_iob
from ray_jobs.train import TrainConfig, export_final_model, fit_model, parse_args

from conftest import COMPILED_STEP, COMPILED_STEP_THREADS

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def train_file(tmp_path_factory, data_dir):
    examples = read_iob(data_dir / "bioner-iob/BC5CDR/train.tsv", {"Chemical": "chemical", "Disease": "disease"})[:96]
    examples += [
        {"tokenized_text": [], "ner": []},  # empty text
        {"tokenized_text": ["a", "b"], "ner": [[0, 5, "disease"]]},  # span out of range
        {"tokenized_text": ["w"] * 30, "ner": [[0, 20, "disease"]]},  # wider than max_width
    ]
    path = tmp_path_factory.mktemp("train") / "train.json"
    path.write_text(json.dumps(examples))
    return path


def config(tmp_path, backbone, train_file, **changes) -> TrainConfig:
    values = {
        "name": "tiny",
        "output": str(tmp_path / "out"),
        "max_steps": 20,
        "checkpoint_every": 5,
        "keep_checkpoints": 10,
        "model": {"backbone": str(backbone), "hidden_size": 32, "max_width": 8, "max_len": 64},
        "data": {"train": str(train_file), "shuffle": False},
        "optim": {"lr_encoder": 5e-4, "lr_others": 5e-3, "warmup_ratio": 0.0, "schedule": "constant"},
        "scale": {"num_workers": 2, "micro_batch_size": 4, "zero_stage": 2},
    }
    for key, value in changes.items():
        section, _, field = key.rpartition(".")
        (values[section] if section else values)[field] = value
    return TrainConfig.model_validate(values)


@pytest.fixture(scope="module")
def validation_file(tmp_path_factory, data_dir):
    """24 held-out sentences of the training file's corpus, and a malformed one."""
    examples = read_iob(data_dir / "bioner-iob/BC5CDR/train.tsv", {"Chemical": "chemical", "Disease": "disease"})[300:324]
    path = tmp_path_factory.mktemp("validation") / "validation.json"
    path.write_text(json.dumps(examples + [{"tokenized_text": ["a"], "ner": [[0, 3, "disease"]]}]))
    return path


def test_two_compiled_workers_zero2_loss_falls_validation_scores_and_checkpoint_reloads(local_ray, tmp_path, still_backbone, train_file, validation_file):
    """The compiled step (torch.compile) under Ray Train and DeepSpeed ZeRO-2, the shipped GPU configs' stage, over
    token-budget micro-batches of one shape: 4 rows, as micro_batch_size 4 would cut them. A validation file of its
    own is scored at every checkpoint, each worker its half, in eval mode: no compiled graph is built for it."""
    compiled_step = {f"{section}.{key}": value for section, fields in COMPILED_STEP.items() for key, value in fields.items()}
    validation = {"data": {"path": str(validation_file)}, "threshold": 0.2}
    result = fit_model(config(tmp_path, still_backbone, train_file, validation=validation, **compiled_step))
    assert result.error is None
    history = sorted((metrics["step"], metrics) for _, metrics in result.best_checkpoints)
    assert [step for step, _ in history] == [5, 10, 15, 20]
    first, last = history[0][1], history[-1][1]
    assert last["loss"] < 0.7 * first["loss"], (first["loss"], last["loss"])
    assert last["batch_shapes"] == 1 and 1 <= last["compiled_graphs"] <= 4  # rank 0's: a few graphs, built once
    assert (last["validation_rows"], last["val_examples"], last["val_skipped"], last["training_rows"]) == (25, 24, 1, 99)
    scores = {step: metrics["val_f1"] for step, metrics in history}
    assert last["val_loss"] < 0.7 * first["val_loss"] and all(0 <= f1 <= 1 for f1 in scores.values())
    assert last["best_step"] == max(scores, key=lambda step: (scores[step], step)) and last["best_val_f1"] == max(scores.values())
    assert last["torch_threads"] == COMPILED_STEP_THREADS
    # 99 rows, every one in each epoch: 50 on one worker and 49 on the other, an epoch of 12 micro-batches of 4 and
    # one of 2 or 1. 20 steps: 13 + 7 micro-batches, all 99 rows then 28 per worker; every row counted once, as an
    # example or as skipped.
    assert last["examples_seen"] + sum(last["skipped"].values()) == 99 + 2 * 7 * 4
    # counted (once per epoch the workers went through), never fatal
    assert set(last["skipped"]) == {"empty_tokenized_text", "span_out_of_range", "span_too_wide"}
    progress = json.loads((tmp_path / "out" / "_PROGRESS.json").read_text())  # rank 0's, for monitoring
    assert (progress["job"], progress["done"], progress["total"], progress["finished"]) == ("tiny", 20, 20, True)
    assert progress["figures"]["loss"] == round(last["loss"], 4) and progress["per_s"] > 0
    final = export_final_model(result, tmp_path / "out")
    model = GLiNER.from_pretrained(final)
    entities = model.predict_entities("Cisplatin caused nephrotoxicity and hearing loss .", ["chemical", "disease"], threshold=0.0)
    assert entities and all(e["label"] in ("chemical", "disease") for e in entities)
    assert (final / "gliner_config.json").exists() and not (final / "deepspeed").exists()


@pytest.fixture(scope="module")
def nearly_all_malformed_file(tmp_path_factory, data_dir):
    """One good row among 31 malformed ones: of the 2 workers' equal shards, at least one holds nothing valid."""
    good = read_iob(data_dir / "bioner-iob/BC5CDR/train.tsv", {"Chemical": "chemical", "Disease": "disease"})[:1]
    bad = [{"tokenized_text": ["a", "b"], "ner": [[0, 5, "disease"]]}] * 31
    path = tmp_path_factory.mktemp("nearly_all_malformed") / "train.json"
    path.write_text(json.dumps(good + bad))
    return path


@pytest.fixture(scope="module")
def nothing_to_find_file(tmp_path_factory):
    """Validation sentences that mention nothing (F1 is 0 whatever the model finds), and a malformed one."""
    examples = [{"tokenized_text": f"sentence {index} is plain text .".split(), "ner": [], "ner_labels": ["chemical", "disease"]} for index in range(6)]
    path = tmp_path_factory.mktemp("nothing_to_find") / "validation.json"
    path.write_text(json.dumps(examples + [{"tokenized_text": []}]))
    return path


def test_bf16_run_with_all_malformed_micro_batches_fails_once_resumes_keeps_ranks_in_step_and_stops_early(local_ray, tmp_path, tiny_backbone, nearly_all_malformed_file, nothing_to_find_file):
    """A worker whose micro-batch has no valid example still steps (a placeholder weighted 0). Skipping it instead,
    a worker whose whole shard is malformed would loop over its epochs without ever entering a collective, while
    the other waits in one (until the collective timeout, 120 s here; then again after the restart). The run also
    accumulates 2 micro-batches per step, crosses epoch boundaries (4 micro-batches per worker per epoch, 6 steps),
    fails at step 5 and resumes from step 4, in bf16 autocast, stops early by validation patience, and exports fp32
    weights."""
    run_config = config(tmp_path, tiny_backbone, nearly_all_malformed_file, max_steps=9, checkpoint_every=2, fail_at_step=5, max_failures=1,
                        validation={"data": {"path": str(nothing_to_find_file)}, "patience": 2},
                        **{"scale.precision": "bf16", "scale.grad_accum": 2, "scale.collective_timeout_s": 120})
    result = fit_model(run_config)
    assert result.error is None
    metrics = result.metrics
    assert metrics["resumed_from_step"] == 4  # not 0: the restarted workers loaded step 4
    # Early stopping: F1 is 0 at every validation (nothing to find), so step 2's is the last higher one; step 4 is
    # one validation without, step 6 two (the count came back with the step-4 checkpoint): the run stops at step 6.
    assert (metrics["step"], metrics["stopped_early"], metrics["validations_without_improvement"]) == (6, True, 2)
    assert (metrics["val_f1"], metrics["best_step"], metrics["val_examples"], metrics["val_skipped"]) == (0.0, 6, 6, 1)  # the latest of equals
    assert sorted(metrics["step"] for _, metrics in result.best_checkpoints) == [2, 4, 6]
    assert metrics["placeholder_micro_batches"] >= 4 * 2  # a whole shard malformed, and its rank stepped throughout
    # Every micro-batch of 4 rows was counted once: 4 steps before the failure, 2 after, 2 micro-batches each, 2 workers.
    assert metrics["examples_seen"] + metrics["skipped"]["span_out_of_range"] == 6 * 2 * 2 * 4
    final = export_final_model(result, tmp_path / "out")
    with safe_open(final / "model.safetensors", "pt") as weights:
        assert {str(weights.get_slice(key).get_dtype()) for key in weights.keys()} == {"F32"}
    assert GLiNER.from_pretrained(final).predict_entities("Cisplatin caused nephrotoxicity .", ["chemical", "disease"], threshold=0.0)


def test_config_flags_overrides_and_errors(tmp_path, tiny_backbone, train_file):
    path = tmp_path / "train.yaml"
    path.write_text(f"output: {tmp_path}/o\nmax_steps: 5\nmodel:\n  backbone: {tiny_backbone}\ndata:\n  train: x.json\n")
    parsed, _ = parse_args(["--config", str(path), "--train-data", str(train_file), "--max-steps", "9", "--num-workers", "2", "optim.lr_others=0.001", "scale.zero_stage=1"])
    assert (parsed.max_steps, parsed.scale.num_workers, parsed.data.train) == (9, 2, str(train_file))
    assert (parsed.optim.lr_others, parsed.scale.zero_stage) == (0.001, 1)
    with pytest.raises(ValueError, match="learning_rate"):
        parse_args(["--config", str(path), "optim.learning_rate=1"])
    with pytest.raises(ValueError, match="zero_stage"):
        parse_args(["--config", str(path), "scale.zero_stage=5"])
    with pytest.raises(ValueError, match="not of the form"):
        parse_args(["--config", str(path), "max_steps"])
    with pytest.raises(ValueError, match="fp16 is not supported"):
        parse_args(["--config", str(path), "scale.precision=fp16"])
    assert parse_args(["--config", str(path), "scale.precision=bf16"])[0].scale.precision == "bf16"
    several = parse_args(["--config", str(path), "data.train=[{path: a.tsv, label_map: {X: x}}, {path: b.json}]"])[0].data.sources()
    assert [(source.path, source.label_map) for source in several] == [("a.tsv", {"X": "x"}), ("b.json", None)]
    assert parse_args(["--config", str(path), "data.label_map={X: x}"])[0].data.sources()[0].label_map == {"X": "x"}
    with pytest.raises(ValueError, match="give each its own format and label_map"):
        parse_args(["--config", str(path), "data.train=[{path: a.tsv}]", "data.label_map={X: x}"])


def test_bi_encoder_post_training_starts_from_a_checkpoint_with_its_label_encoder_frozen(local_ray, tmp_path, tiny_bi_dir, train_file):
    """init_from: a bi-encoder checkpoint continues training (1 worker, ZeRO-1) and is saved bi-encoder again;
    model.freeze keeps its label encoder as it was, under DeepSpeed too."""
    before = GLiNER.from_pretrained(tiny_bi_dir)
    run_config = config(tmp_path, tiny_bi_dir, train_file, max_steps=3, checkpoint_every=3)
    run_config = run_config.model_copy(update={
        "model": run_config.model.model_copy(update={"backbone": None, "init_from": str(tiny_bi_dir), "freeze": ["labels_encoder"]}),
        "scale": run_config.scale.model_copy(update={"num_workers": 1, "zero_stage": 1}),
    })
    result = fit_model(run_config)
    assert result.error is None and result.metrics["step"] == 3
    assert result.metrics["torch_threads"] == 1  # the 0.5 CPU Ray assigned, not os.cpu_count() // workers (2 here)
    after = GLiNER.from_pretrained(export_final_model(result, tmp_path / "out"))
    assert after.config.is_bi_encoder and after.labels_tokenizer is not None
    changed = [name for name, tensor in after.model.state_dict().items() if not (tensor == before.model.state_dict()[name]).all()]
    assert "prompt_rep_layer.0.weight" in changed and any(name.startswith("backbone.") for name in changed)  # trained from the given weights
    assert not any(name.startswith("labels_backbone.") for name in changed)  # frozen


def test_a_source_selects_sentences_with_mentions_a_seeded_sample_and_its_label_sets(local_ray, data_dir):
    from ray_jobs.train import TrainSource, selected_examples

    path = str(data_dir / "bioner-iob/NCBI-disease/train.tsv")
    sentences = read_iob(path, {"Disease": "disease"})
    with_mentions = [" ".join(sentence["tokenized_text"]) for sentence in sentences if sentence["ner"]]
    source = TrainSource(path=path, label_map={"Disease": "disease"}, min_mentions=1)
    given = selected_examples(source, seed=0).take_all()
    assert sorted(" ".join(row["tokenized_text"]) for row in given) == sorted(with_mentions)  # 2,923 of 5,424
    assert all(row["ner_labels"] == ["disease"] for row in given)  # the corpus's types

    sampled_source = source.model_copy(update={"max_examples": 50, "label_sets": "sampled"})
    sample = selected_examples(sampled_source, seed=0).take_all()
    assert len(sample) == 50 and all(row["ner"] and row["ner_labels"] is None for row in sample)
    texts = [" ".join(row["tokenized_text"]) for row in sample]
    assert set(texts) <= set(with_mentions) and len(set(texts)) == 50
    assert texts == [" ".join(row["tokenized_text"]) for row in selected_examples(sampled_source, seed=0).take_all()]  # seeded
    assert texts != [" ".join(row["tokenized_text"]) for row in selected_examples(sampled_source, seed=1).take_all()]
