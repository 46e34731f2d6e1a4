"""The training step in few shapes, and compiled: token-budget micro-batches padded to their length bucket score
exactly like unpadded ones, cut examples are counted, and torch.compile's step trains like the eager one (same losses
over 20 AdamW steps, same checkpoint) while building a graph per shape family, not per batch."""
import json
import random
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from gliner import GLiNER
from gliner.evaluation.iob import read_iob
from gliner.training import PaddedShape, batch_loss, build_training_batch, choose_label_sets, parse_example, shared_label_set
from ray_jobs.training.fit_loop import RowStream, ShapeLog, TokenBudget, compiled_graphs
from ray_jobs.train import GlinerTask, TrainConfig

from conftest import COMPILED_STEP, COMPILED_STEP_THREADS

# One shape (4 rows, 64 words, 256 subwords): compiling costs a minute on 2 cores per shape family. The 2-worker ZeRO-2
# run of tests/test_train_job.py trains the same step compiled, and finds these graphs in the compile cache.
MODEL = COMPILED_STEP["model"]
BUCKETS = tuple(COMPILED_STEP["data"]["length_buckets"])
BUDGET = COMPILED_STEP["scale"]["micro_batch_tokens"]


def bc5cdr(data_dir: Path, count: int) -> list[dict]:
    return read_iob(data_dir / "bioner-iob/BC5CDR/train.tsv", {"Chemical": "chemical", "Disease": "disease"})[:count]


@pytest.mark.parametrize("bi_encoder", [False, True])
def test_a_batch_padded_to_its_bucket_scores_exactly_like_the_unpadded_batch(tiny_backbone, data_dir, bi_encoder):
    torch.manual_seed(0)
    model = GLiNER.from_backbone(str(tiny_backbone), labels_encoder=str(tiny_backbone) if bi_encoder else None, hidden_size=16, max_len=64, max_width=6, dropout=0.0)
    model.model.eval()
    examples = [parse_example(dict(raw, ner=[span for span in raw["ner"] if span[1] - span[0] < 6]), 6, 64) for raw in bc5cdr(data_dir, 5)]
    label_sets = [shared_label_set(examples, 25, random.Random(0))] if bi_encoder else choose_label_sets(examples, 25, 1, random.Random(0))
    plain = build_training_batch(model.config, model.tokenizer, examples, label_sets, model.labels_tokenizer)
    padded = build_training_batch(model.config, model.tokenizer, examples, label_sets, model.labels_tokenizer, PaddedShape(rows=8, words=64, labels=25))
    assert padded["input_ids"].shape[0] == 8 and padded["input_ids"].shape[1] % 64 == 0
    assert padded["span_mask"].shape == (8, 64 * 6) and not padded["span_mask"][5:].any() and not padded["label_mask"][5:].any()
    assert padded["labels"].shape[-1] == (8 if bi_encoder else 25)
    assert padded["labels_input_ids"].shape[1] % 8 == 0 if bi_encoder else True
    with torch.no_grad():
        assert batch_loss(model.model, padded).item() == pytest.approx(batch_loss(model.model, plain).item(), rel=1e-6)


def test_examples_past_max_len_are_cut_and_counted():
    example = parse_example({"tokenized_text": ["w"] * 10, "ner": [[0, 1, "a"], [6, 7, "b"], [8, 9, "c"]]}, max_width=4, max_len=7)
    assert len(example.tokens) == 7 and example.spans == [(0, 1, "a")] and (example.cut_words, example.cut_spans) == (3, 2)
    assert (parse_example({"tokenized_text": ["w"] * 3}, 4, 7).cut_words, parse_example({"tokenized_text": ["w"]}, 4, 7).cut_spans) == (0, 0)


def train_steps(model_dir: Path, rows: list[dict], compile_mode: str, steps: int) -> tuple[list[float], dict, ShapeLog, GLiNER]:
    """`steps` AdamW steps of the train job's task (no Ray, no DeepSpeed) over token-budget micro-batches."""
    config = TrainConfig.model_validate({
        "output": "unused", "max_steps": steps, "model": {"init_from": str(model_dir), **MODEL},
        "data": {"train": "unused", **COMPILED_STEP["data"]},
        "optim": {"lr_encoder": 1e-3, "lr_others": 1e-3}, "scale": {**COMPILED_STEP["scale"], "compile": compile_mode},
    })
    task = GlinerTask(config)
    torch.manual_seed(0)
    module = task.build_model(None)
    # No dropout anywhere: compiled code draws its masks from another generator.
    assert all(layer.p == 0 for layer in module.modules() if isinstance(layer, torch.nn.Dropout))
    optimizer = task.optimizer(module)
    task.start(rank=0, step=0)
    lengths = torch.tensor([len(row["tokenized_text"]) for row in rows]).numpy()
    stream = RowStream(len(rows), 0, 1, 8, seed=1, shuffle=True, lengths=lengths, budget=TokenBudget(BUCKETS, BUDGET))
    losses, counts, shapes, graphs = [], {}, ShapeLog(), []
    for _, (epoch, row_ids, bucket) in zip(range(steps), stream.after(0)):
        micro = task.micro_batch([rows[row] for row in row_ids.tolist()], bucket)
        micro.epoch = epoch
        shapes_before = len(shapes.seen)
        shapes.add(micro, log=False)
        loss = task.loss(SimpleNamespace(module=module), micro.tensors)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        graphs.append((len(shapes.seen) > shapes_before, compiled_graphs()))
        for key, value in micro.counts.items():
            counts[key] = counts.get(key, 0) + value
    return losses, counts, shapes, graphs, task.gliner


def test_the_compiled_step_trains_like_the_eager_one_and_compiles_per_shape_family_not_per_batch(still_backbone, data_dir, tmp_path):
    torch.manual_seed(3)
    model_dir = GLiNER.from_backbone(str(still_backbone), **MODEL).save_pretrained(tmp_path / "start")
    rows = bc5cdr(data_dir, 120)
    rows[0] = dict(rows[0], tokenized_text=rows[0]["tokenized_text"] * 4)  # over max_len: cut and counted
    graphs_before = compiled_graphs()
    threads = torch.get_num_threads()
    torch.set_num_threads(COMPILED_STEP_THREADS)  # inductor's CPU kernels, and so the cache's, are built per thread count
    try:
        eager, eager_counts, shapes, eager_graphs, eager_model = train_steps(model_dir, rows, "off", steps=20)
        assert eager_graphs[-1][1] == graphs_before
        compiled, compiled_counts, _, graphs, compiled_model = train_steps(model_dir, rows, "on", steps=20)
    finally:
        torch.set_num_threads(threads)

    assert compiled == pytest.approx(eager, rel=1e-4) and eager[-1] < eager[0] / 2
    assert compiled_counts == eager_counts and eager_counts["cut_examples"] >= 1 and eager_counts["cut_words"] > 0  # row 0 at least
    assert (eager_counts["padded_words"], eager_counts["padded_tokens"]) == (20 * 4 * 64, 20 * 4 * 256)  # padding shares' bases
    assert 0 < eager_counts["words"] < eager_counts["padded_words"] and 0 < eager_counts["tokens"] < eager_counts["padded_tokens"]
    assert len(shapes.seen) == 1 and dict(next(iter(shapes.seen)))["input_ids"] == (4, 256)
    # The first step builds the graphs (4: the LSTM, which dynamo does not trace, splits the forward); the other 19
    # batches, of the same shape, reuse them.
    built = [count - previous for (_, previous), (_, count) in zip([(None, graphs_before)] + graphs, graphs)]
    assert 1 <= built[0] <= 4 and built[1:] == [0] * 19
    eager_files, compiled_files = eager_model.save_pretrained(tmp_path / "eager"), compiled_model.save_pretrained(tmp_path / "compiled")
    assert sorted(path.name for path in eager_files.iterdir()) == sorted(path.name for path in compiled_files.iterdir())
    assert json.loads((eager_files / "gliner_config.json").read_text()) == json.loads((compiled_files / "gliner_config.json").read_text())
    reloaded = GLiNER.from_pretrained(compiled_files).model.state_dict()
    assert reloaded.keys() == eager_model.model.state_dict().keys()
    # Attention key biases are left out: softmax ignores a constant added to a row's scores, so their true gradient
    # is 0 and both runs move them by AdamW's normalised rounding noise (+-lr a step, of either sign).
    eager_weights = eager_model.model.state_dict()
    compared = [key for key in reloaded if not key.endswith("attention.self.key.bias")]
    assert len(compared) == len(reloaded) - 2
    assert max(float((reloaded[key] - eager_weights[key]).norm() / eager_weights[key].norm()) for key in compared) < 1e-5
