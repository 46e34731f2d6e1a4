"""The CPU dropout: right drop rate, independent elements, unbiased scale, exact gradients, seeded; swapped in by the
training job only (a loaded model keeps torch's dropout)."""
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from gliner import GLiNER
from gliner.checkpoint import upstream_state_dict
from gliner.dropout import Dropout, keep_mask
from ray_jobs.train import GlinerTask, TrainConfig


@pytest.mark.parametrize("p", [0.1, 0.4, 0.5])
def test_keep_rate_matches_p(p):
    torch.manual_seed(0)
    kept = keep_mask(torch.Size([2_000_000]), p).float().mean().item()
    assert abs(kept - (1 - p)) < 0.002  # 4.5 standard deviations at p=0.5


def test_neighbouring_elements_are_independent():
    """Four 16-bit uniforms come from one 64-bit draw; each pair among them must still be independent."""
    torch.manual_seed(1)
    mask = keep_mask(torch.Size([400_000, 4]), 0.3).float()
    for first, second in [(0, 1), (1, 2), (2, 3), (0, 3)]:
        both = (mask[:, first] * mask[:, second]).mean().item()
        assert abs(both - 0.7 * 0.7) < 0.004


def test_output_is_unbiased_and_zero_or_scaled():
    torch.manual_seed(2)
    layer = Dropout(0.25).train()
    inputs = torch.full((1000, 1000), 2.0)
    outputs = layer(inputs)
    assert torch.all((outputs == 0) | torch.isclose(outputs, torch.tensor(2.0 / 0.75)))
    assert outputs.mean().item() == pytest.approx(2.0, abs=0.01)


def test_gradient_is_the_mask_times_the_scale():
    torch.manual_seed(3)
    inputs = torch.randn(64, 50, requires_grad=True)
    outputs = Dropout(0.1).train()(inputs)
    outputs.sum().backward()
    expected = (outputs.detach() != 0).float() / 0.9
    assert torch.equal(inputs.grad, expected)


def test_eval_zero_and_full_drop():
    inputs = torch.randn(10, 10)
    assert torch.equal(Dropout(0.3).eval()(inputs), inputs)
    assert torch.equal(Dropout(0.0).train()(inputs), inputs)
    assert torch.equal(Dropout(1.0).train()(inputs), torch.zeros_like(inputs))


def test_same_seed_same_mask_other_seed_other_mask():
    layer = Dropout(0.5).train()
    inputs = torch.ones(100, 100)
    torch.manual_seed(7)
    first = layer(inputs)
    torch.manual_seed(7)
    again = layer(inputs)
    torch.manual_seed(8)
    other = layer(inputs)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_training_opts_in_everywhere_loading_does_not_and_checkpoint_keys_stay(tiny_uni_dir, tiny_bi_dir):
    for directory in (tiny_uni_dir, tiny_bi_dir):
        loaded = GLiNER.from_pretrained(directory)
        assert {type(module) for module in loaded.modules() if isinstance(module, nn.Dropout)} == {nn.Dropout}
        config = TrainConfig.model_validate({"output": "unused", "max_steps": 1, "model": {"init_from": str(directory)}, "data": {"train": "unused"}})
        trained = GlinerTask(config).build_model(checkpoint_dir=None)
        dropouts = [module for module in trained.modules() if isinstance(module, nn.Dropout)]
        assert dropouts and all(type(module) is Dropout for module in dropouts)
        assert set(load_file(str(directory / "model.safetensors"))) <= set(upstream_state_dict(trained))
