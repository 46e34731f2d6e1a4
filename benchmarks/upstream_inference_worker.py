"""Runs in the upstream venv (.venv-upstream, gliner==0.2.29): builds the benchmark checkpoints, or times one
inference scenario. Called by inference_vs_upstream.py; it never imports this project's code."""
import argparse
import json
import os
import time
import warnings

os.environ["HF_HUB_OFFLINE"] = "1"
warnings.filterwarnings("ignore")

import torch  # noqa: E402
from gliner import GLiNER, GLiNERConfig  # noqa: E402
from peak_memory import peak_rss_mib  # noqa: E402


def make_checkpoints(out_dir: str, backbone: str, train_data: str, steps: int) -> None:
    """MiniLM-backbone uni- and bi-encoders (hidden 512, upstream's default) briefly trained by upstream's own
    trainer on BC5CDR and NCBI-disease sentences: scores then look like a real model's (mostly far from the
    threshold), which random heads do not give (every probability within ~0.01 of 0.5). Each negative span x label
    enters the loss with probability 0.2 (upstream's `masking="global"`, `negatives=0.2`): with every negative, the
    first steps drive all logits below upstream's log-clamp and the model never predicts an entity."""
    examples = json.load(open(train_data))
    for name, labels_encoder, seed in (("uni", None, 101), ("bi", backbone, 103)):
        torch.manual_seed(seed)
        config = GLiNERConfig(model_name=backbone, labels_encoder=labels_encoder, hidden_size=512, max_len=384, max_width=12)
        model = GLiNER.from_config(config, backbone_from_pretrained=True, local_files_only=True)
        model.train_model(
            examples, None, output_dir=os.path.join(out_dir, name + "_trainer"), max_steps=steps, learning_rate=5e-5,
            others_lr=1e-3, per_device_train_batch_size=8, use_cpu=True, save_steps=100000, logging_steps=50,
            dataloader_num_workers=0, warmup_ratio=0.05, masking="global", negatives=0.2,
        )
        model.save_pretrained(os.path.join(out_dir, name), safe_serialization=True)


def run(args) -> None:
    torch.set_num_threads(args.threads)
    texts = json.load(open(args.texts))
    labels = json.load(open(args.labels))
    # Upstream's own CPU options in 0.2.29: bf16 weights (`dtype=`), int8 (`quantize`: torch's dynamic int8) and
    # `compile()` (torch.compile of the whole model, dynamic shapes).
    model = GLiNER.from_pretrained(args.checkpoint, local_files_only=True, **({"dtype": "bf16"} if args.mode == "bf16" else {}))
    if args.mode == "int8":
        model.quantize("int8")
    if args.compile:
        model.compile()
    started = time.perf_counter()  # warm-up; compiled: every batch shape once, so no timed run compiles
    model.inference(texts if args.compile else texts[:4], labels, threshold=args.threshold, batch_size=args.batch_size)
    warmup_seconds = time.perf_counter() - started
    times = []
    for _ in range(args.repeats):  # the best of several runs: this machine's timings are noisy
        start = time.perf_counter()
        predictions = model.inference(texts, labels, threshold=args.threshold, batch_size=args.batch_size)
        times.append(time.perf_counter() - start)
    seconds = min(times)
    peak_mib = peak_rss_mib()
    json.dump({"seconds": seconds, "warmup_seconds": warmup_seconds, "peak_rss_mib": peak_mib, "predictions": predictions}, open(args.out, "w"))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--make-checkpoints")
    parser.add_argument("--backbone")
    parser.add_argument("--train-data")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--checkpoint")
    parser.add_argument("--texts")
    parser.add_argument("--labels")
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--mode", choices=["fp32", "bf16", "int8"], default="fp32")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.make_checkpoints:
        make_checkpoints(args.make_checkpoints, args.backbone, args.train_data, args.steps)
    else:
        run(args)
