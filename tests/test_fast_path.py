"""The library's fast path computes the same thing as upstream's computation (tests/parity/reference.py)."""
import random
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent / "parity"))
from assemble import assemble_checkpoint, load_upstream_record  # noqa: E402
from reference import as_reference, reference_logits, span_vectors  # noqa: E402

from gliner import GLiNER  # noqa: E402
from gliner import precision as precision_module  # noqa: E402
from gliner.decoding import Span, greedy_select  # noqa: E402
from gliner.inputs import encode_words, enumerate_spans, split_words  # noqa: E402
from gliner.model import SpanHead, WordLSTM  # noqa: E402
from gliner.training import span_loss  # noqa: E402

RECORD = load_upstream_record()


@pytest.fixture(scope="module", params=["uni", "bi", "deberta"])
def parity_model(request, tmp_path_factory):
    return GLiNER.from_pretrained(assemble_checkpoint(request.param, tmp_path_factory.mktemp(request.param)))


def both_logits(model, word_lists, labels):
    """Upstream's logits and the library's, on the same batch."""
    label_inputs = model._label_inputs(labels)
    inputs = encode_words(model.tokenizer, word_lists, model.config.max_width, model.preparer.prompt(labels))
    with torch.inference_mode():
        reference, _ = reference_logits(model.model, inputs, label_inputs.get("labels_embeds"))
        return reference.float(), model.logits(word_lists, labels)


def test_fast_logits_equal_reference_logits_on_every_valid_span(parity_model):
    texts = RECORD["texts"][:24]
    word_lists = [split_words(t).tokens[: parity_model.config.max_len] for t in texts]
    labels = RECORD["models"]["uni"][4]["labels"]
    reference, fast = both_logits(parity_model, word_lists, labels)
    lengths = torch.tensor([len(w) for w in word_lists])
    _, span_mask = enumerate_spans(lengths, parity_model.config.max_width)
    valid = span_mask.view(reference.shape[:3])
    assert valid.sum() > 1500
    difference = (reference - fast)[valid].abs().max().item()
    assert difference < 2e-5 * max(1.0, reference[valid].abs().max().item())


@pytest.mark.parametrize("num_layers", [1, 2])
def test_lstm_runs_each_row_over_its_true_length(num_layers):
    torch.manual_seed(0)
    lstm = WordLSTM(48, num_layers).eval()
    words = torch.randn(3, 37, 48)
    lengths = torch.tensor([37, 1, 20])
    with torch.inference_mode():
        batched = lstm(words, lengths)
        for row, length in enumerate(lengths.tolist()):
            alone = lstm(words[row : row + 1, :length], lengths[row : row + 1])
            assert (batched[row, :length] - alone[0]).abs().max().item() < 1e-5  # padding changes nothing
            assert torch.count_nonzero(batched[row, length:]) == 0


@pytest.mark.parametrize("span_mode", ["markerV0", "marker"])
def test_factorised_training_loss_and_gradients_equal_reference(span_mode):
    torch.manual_seed(1)
    marker = SpanHead(span_mode, 32, 5, dropout=0.0)
    prompt_layer = torch.nn.Linear(32, 32)
    words = torch.randn(3, 9, 32, requires_grad=True)
    prompts = torch.randn(3, 4, 32)
    lengths = torch.tensor([9, 4, 1])
    span_idx, span_mask = enumerate_spans(lengths, 5)
    labels = (torch.rand(3, 9, 5, 4) < 0.1).float() * span_mask.view(3, 9, 5, 1)
    label_mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 0, 0]])
    losses, gradients = [], []
    for reference in (True, False):
        marker.zero_grad()
        words.grad = None
        projected = prompt_layer(prompts)
        if reference:
            span_rep = span_vectors(marker, words, span_idx * span_mask.unsqueeze(-1))
            logits = torch.einsum("BLKD,BCD->BLKC", span_rep, projected)
        else:
            logits = marker(words, marker.label_side(projected))
        loss = span_loss(logits, labels, label_mask, span_mask, alpha=0.75, gamma=2.0)
        loss.backward()
        losses.append(loss.item())
        gradients.append([words.grad.clone()] + [p.grad.clone() for p in marker.parameters()])
    assert losses[0] > 0
    assert abs(losses[0] - losses[1]) <= 1e-5 * losses[0]
    for reference_grad, fast_grad in zip(*gradients):
        assert torch.allclose(reference_grad, fast_grad, atol=1e-5, rtol=1e-4)


def reference_greedy(candidates, flat_ner, multi_label):
    """Upstream's predicate, applied pairwise (O(n^2))."""
    def conflict(a, b):
        if (a.start, a.end) == (b.start, b.end):
            return not multi_label
        overlaps = not (a.start > b.end or b.start > a.end)
        if flat_ner:
            return overlaps
        nested = (a.start <= b.start and a.end >= b.end) or (b.start <= a.start and b.end >= a.end)
        return overlaps and not nested
    kept = []
    for span in sorted(candidates, key=lambda s: -s.score):
        if not any(conflict(span, other) for other in kept):
            kept.append(span)
    return sorted(kept, key=lambda s: s.start)


@pytest.mark.parametrize("flat_ner", [True, False])
@pytest.mark.parametrize("multi_label", [True, False])
def test_fast_greedy_equals_pairwise_greedy(flat_ner, multi_label):
    rng = random.Random(7)
    for _ in range(300):
        candidates = []
        for _ in range(rng.randint(0, 40)):
            start = rng.randint(0, 25)
            # Coarse scores make many exact ties, which must keep candidate order.
            candidates.append(Span(start, start + rng.randint(0, 5), rng.choice("abc"), rng.choice([0.6, 0.7, 0.8, 0.9])))
        assert greedy_select(candidates, flat_ner, multi_label) == reference_greedy(candidates, flat_ner, multi_label)


def spread_scores(model, factor=400.0):
    """Scale the last label-projection layer so random heads give logits spread over several units."""
    with torch.no_grad():
        model.model.prompt_rep_layer[3].weight.mul_(factor)
        model.model.prompt_rep_layer[3].bias.mul_(factor)
    model._label_cache.clear()
    return model


@pytest.mark.parametrize("kind", ["uni", "bi"])
def test_fast_path_predicts_what_upstreams_computation_predicts(kind, request):
    model = spread_scores(GLiNER.from_pretrained(request.getfixturevalue(f"tiny_{kind}_dir")))
    reference_model = as_reference(spread_scores(GLiNER.from_pretrained(request.getfixturevalue(f"tiny_{kind}_dir"))))
    texts, labels = RECORD["texts"], ["disease", "chemical", "gene"]
    reference_logits, _ = both_logits(model, [split_words(t).tokens[:40] for t in texts[:8]], labels)
    finite = reference_logits[torch.isfinite(reference_logits)]
    assert finite.std() > 1.0  # spread, not every probability next to 0.5
    threshold = round(torch.sigmoid(torch.quantile(finite, 0.98)).item(), 4)
    for flat_ner, multi_label in ((True, False), (False, True)):
        reference_results, fast_results = (
            side.inference(texts, labels, threshold=threshold, flat_ner=flat_ner, multi_label=multi_label) for side in (reference_model, model))
        assert sum(map(len, reference_results)) > 30
        for ours, theirs in zip(fast_results, reference_results):
            assert [(e["start"], e["end"], e["label"]) for e in ours] == [(e["start"], e["end"], e["label"]) for e in theirs]
            assert all(abs(a["score"] - b["score"]) < 1e-5 for a, b in zip(ours, theirs))


def test_bi_encoder_label_vectors_are_encoded_once_per_label_set(tiny_bi_dir):
    model = GLiNER.from_pretrained(tiny_bi_dir)
    calls = []
    original = model.model.encode_labels
    model.model.encode_labels = lambda *args: calls.append(1) or original(*args)
    for _ in range(3):
        model.inference(["Aspirin treats headache.", "BRCA1 causes cancer."], ["drug", "disease"], threshold=0.5)
    assert len(calls) == 1
    model.inference(["Aspirin treats headache."], ["drug", "gene"], threshold=0.5)
    assert len(calls) == 2
    model.train()
    model.eval()
    model.inference(["Aspirin treats headache."], ["drug", "disease"], threshold=0.5)
    assert len(calls) == 3  # training may change the weights, so the cache is dropped


def test_batches_group_similar_lengths(tiny_uni_dir):
    model = GLiNER.from_pretrained(tiny_uni_dir)
    seen_lengths = []
    original = model.forward_inputs
    model.forward_inputs = lambda inputs, *rest: seen_lengths.append(inputs["text_lengths"].tolist()) or original(inputs, *rest)
    texts = ["word " * n for n in (3, 30, 4, 29, 5, 28, 6, 27)]
    model.inference(texts, ["x"], batch_size=4)
    assert seen_lengths == [[30, 29, 28, 27], [6, 5, 4, 3]]


@pytest.mark.parametrize("kind", ["uni", "bi"])
def test_bf16_runs_and_stays_close(kind, request, monkeypatch):
    """CPU bf16 (a bf16 model with an fp32 last layer; tests/test_precision.py checks the mode itself): random weights, so the self-check
    is let through (threshold 0 gives it entities to compare, min_agreement 0 accepts them)."""
    monkeypatch.setattr(precision_module, "cpu_flags", lambda: {"avx512_bf16"})  # on any CPU (emulated where it has none)
    model = GLiNER.from_pretrained(request.getfixturevalue(f"tiny_{kind}_dir"))
    words = [split_words(t).tokens[:40] for t in RECORD["texts"][:6]]
    _, fp32 = both_logits(model, words, ["disease", "chemical"])
    model.set_precision("bf16", threshold=0.0, min_agreement=0.0)
    with torch.inference_mode():
        bf16 = model.logits(words, ["disease", "chemical"])
    finite = torch.isfinite(fp32)
    assert bf16.dtype == torch.float32  # logits are fp32: the label dot-products run in the fp32 last layer
    assert model.model.backbone.embeddings.word_embeddings.weight.dtype == torch.bfloat16
    assert (bf16[finite] - fp32[finite]).abs().max().item() < 0.05 * fp32[finite].abs().max().item()
    with pytest.raises(ValueError, match="precision"):
        model.set_precision("int4")


def test_attention_implementation_override(tiny_uni_dir):
    eager = GLiNER.from_pretrained(tiny_uni_dir, attn_implementation="eager")
    sdpa = GLiNER.from_pretrained(tiny_uni_dir, attn_implementation="sdpa")
    assert eager.model.backbone.config._attn_implementation == "eager"
    assert sdpa.model.backbone.config._attn_implementation == "sdpa"
    text = RECORD["texts"][1]
    a = eager.predict_entities(text, ["disease"], threshold=0.0)
    b = sdpa.predict_entities(text, ["disease"], threshold=0.0)
    assert len(a) == len(b) and max(abs(x["score"] - y["score"]) for x, y in zip(a, b)) < 1e-5
