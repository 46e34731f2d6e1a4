"""Mixed precision as the fit loop runs it, on the CPU, where bf16 autocast is real: fp32 weights, a bf16 forward,
the loss and the LSTM in fp32; gradients, optimizer state and saved weights stay fp32."""
import pytest
import torch
from safetensors import safe_open

from gliner import GLiNER
from gliner.evaluation.iob import read_iob
from gliner.training import batch_loss, build_training_batch, parse_example

# bf16 keeps 8 bits of mantissa (relative rounding 2**-8 = 0.4 %); the encoder's rounding errors partly cancel in a
# loss summed over every span and label. Measured on this model: 0.1-0.3 %; 2 % leaves room for other CPUs' kernels.
LOSS_TOLERANCE = 0.02


@pytest.fixture()
def model_and_batch(trained_tiny_uni_dir, data_dir):
    model = GLiNER.from_pretrained(trained_tiny_uni_dir)
    model.model.eval()  # dropout off: both precisions see the same network
    raw = read_iob(data_dir / "bioner-iob/BC5CDR/train.tsv", {"Chemical": "chemical", "Disease": "disease"})[:8]
    width = model.config.max_width
    examples = [parse_example(dict(item, ner=[span for span in item["ner"] if span[1] - span[0] < width]), width, model.config.max_len)
                for item in raw]
    batch = build_training_batch(model.config, model.tokenizer, examples, [["chemical", "disease"]] * len(examples))
    return model, batch


def test_bf16_loss_matches_fp32_within_tolerance_and_everything_trained_stays_fp32(model_and_batch, tmp_path):
    model, batch = model_and_batch
    assert hasattr(model.model, "rnn")  # a uni-encoder with its word LSTM
    lstm_dtypes = []
    model.model.rnn.lstm.register_forward_hook(lambda module, inputs, output: lstm_dtypes.append((inputs[0].data.dtype, output[0].data.dtype)))

    fp32_loss = batch_loss(model.model, batch)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16_loss = batch_loss(model.model, batch)
        encoder_output = model.model.encode_text(batch["input_ids"], batch["attention_mask"])
    assert encoder_output.dtype == torch.bfloat16  # the autocast really ran the encoder in bf16
    assert fp32_loss.dtype == bf16_loss.dtype == torch.float32
    assert lstm_dtypes == [(torch.float32, torch.float32)] * 2  # fp32 even inside autocast
    relative = abs(bf16_loss.item() - fp32_loss.item()) / fp32_loss.item()
    print(f"\nloss fp32 {fp32_loss.item():.4f} bf16 {bf16_loss.item():.4f} relative difference {relative:.2e}")
    assert 0 < relative < LOSS_TOLERANCE

    optimizer = torch.optim.AdamW(model.model.parameters(), lr=1e-3)
    bf16_loss.backward()
    optimizer.step()
    assert {parameter.grad.dtype for parameter in model.model.parameters() if parameter.grad is not None} == {torch.float32}
    assert {state["exp_avg"].dtype for state in optimizer.state.values()} == {torch.float32}
    saved = model.save_pretrained(tmp_path / "after_bf16_step")
    with safe_open(saved / "model.safetensors", "pt") as weights:
        assert {str(weights.get_slice(key).get_dtype()) for key in weights.keys()} == {"F32"}


def test_word_lstm_runs_fp32_under_autocast_and_returns_the_callers_dtype(model_and_batch):
    model, _ = model_and_batch
    lstm = model.model.rnn
    words = torch.randn(2, 5, model.config.hidden_size)
    lengths = torch.tensor([5, 3])
    reference = lstm(words, lengths)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        in_autocast = lstm(words.bfloat16(), lengths)
    assert in_autocast.dtype == torch.bfloat16 and lstm.lstm.weight_ih_l0.dtype == torch.float32
    # Only the input's and output's bf16 rounding separate the two: the recurrence itself ran in fp32.
    assert torch.allclose(in_autocast.float(), reference, atol=3e-2)
    assert (reference[1, 3:] == 0).all()  # padding stays zero
