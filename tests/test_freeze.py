"""model.freeze: the named components get no gradient and no optimizer state, keep their weights through training,
and stay in the checkpoint; configs that name what a model lacks, or leave nothing to train, are refused."""
from types import SimpleNamespace

import pytest
import torch

from gliner import GLiNER
from gliner.evaluation.iob import read_iob
from gliner.training import FREEZABLE, component_of
from ray_jobs.train import GlinerTask, TrainConfig


def task_for(model_dir, freeze: list[str]) -> GlinerTask:
    return GlinerTask(TrainConfig.model_validate({
        "output": "unused", "max_steps": 3, "model": {"init_from": str(model_dir), "max_width": 8, "max_len": 64, "freeze": freeze},
        "data": {"train": "unused"}, "optim": {"lr_encoder": 1e-2, "lr_others": 1e-2}}))


def test_components_partition_the_parameters():
    assert [component_of(name) for name in ("backbone.encoder.layer.0.output.dense.weight", "projection.weight",
            "labels_backbone.embeddings.word_embeddings.weight", "labels_projection.bias", "rnn.lstm.weight_ih_l0",
            "span_head.out_project.0.weight", "prompt_rep_layer.3.bias")] == \
        ["text_encoder", "text_encoder", "labels_encoder", "labels_encoder", "head", "head", "head"]
    assert FREEZABLE == ("text_encoder", "labels_encoder", "head")


@pytest.mark.parametrize("freeze", [["text_encoder"], ["head"]])
def test_frozen_components_keep_their_weights_get_no_optimizer_state_and_stay_in_the_checkpoint(tiny_uni_dir, data_dir, tmp_path, freeze):
    task = task_for(tiny_uni_dir, freeze)
    module = task.build_model(None)
    before = {name: tensor.clone() for name, tensor in module.state_dict().items()}
    optimizer = task.optimizer(module)
    trained = {id(parameter) for group in optimizer.param_groups for parameter in group["params"]}
    for name, parameter in module.named_parameters():
        assert (id(parameter) in trained) == (component_of(name) not in freeze and ".pooler." not in name), name
    task.start(0, 0)
    rows = read_iob(data_dir / "bioner-iob/BC5CDR/train.tsv", {"Chemical": "chemical", "Disease": "disease"})[:12]
    for step in range(3):
        loss = task.loss(SimpleNamespace(module=module), task.micro_batch(rows[4 * step:4 * step + 4], None).tensors)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert all(parameter.grad is None for name, parameter in module.named_parameters() if component_of(name) in freeze)
    assert {id(parameter) for parameter in optimizer.state} == trained  # optimizer state for the trained ones only
    after = module.state_dict()
    changed = {component_of(name) for name in after if not torch.equal(after[name], before[name])}
    assert changed == ({"text_encoder", "head"} - set(freeze))
    saved = GLiNER.from_pretrained(task.gliner.save_pretrained(tmp_path / "saved")).model.state_dict()
    assert saved.keys() == after.keys() and all(torch.equal(saved[name], after[name]) for name in saved)


def test_freezing_what_a_model_lacks_or_everything_is_refused(tiny_uni_dir, tiny_backbone):
    base = {"output": "o", "max_steps": 1, "data": {"train": "t"}}
    with pytest.raises(ValueError, match="uni-encoder"):
        TrainConfig.model_validate({**base, "model": {"backbone": "b", "freeze": ["labels_encoder"]}})
    with pytest.raises(ValueError, match="leaves nothing to train"):
        TrainConfig.model_validate({**base, "model": {"backbone": "b", "freeze": ["text_encoder", "head"]}})
    with pytest.raises(ValueError, match="uni-encoder"):  # known only once the checkpoint is loaded
        task_for(tiny_uni_dir, ["labels_encoder"]).build_model(None)
    assert TrainConfig.model_validate({**base, "model": {"backbone": "b", "labels_encoder": "l", "freeze": ["text_encoder", "head"]}})
