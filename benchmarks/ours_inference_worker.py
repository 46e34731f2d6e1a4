"""Times one inference scenario with this project's library (run in .venv by inference_vs_upstream.py),
including how much of the time is spent inside the backbone's forward."""
import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "parity"))
from reference import ReferenceGLiNER  # noqa: E402

from gliner import GLiNER  # noqa: E402
from peak_memory import peak_rss_mib  # noqa: E402

warnings.filterwarnings("ignore")


class ForwardTimer:
    """Wall time spent inside a module's forward, via hooks."""

    def __init__(self, module: torch.nn.Module):
        self.seconds = 0.0
        self._started = 0.0
        module.register_forward_pre_hook(self._pre)
        module.register_forward_hook(self._post)

    def _pre(self, *_):
        self._started = time.perf_counter()

    def _post(self, *_):
        self.seconds += time.perf_counter() - self._started


def main(args) -> None:
    torch.set_num_threads(args.threads)
    texts = json.load(open(args.texts))
    labels = json.load(open(args.labels))
    model = (ReferenceGLiNER if args.reference else GLiNER).from_pretrained(args.checkpoint)
    started = time.perf_counter()
    if args.precision != "fp32":  # min_agreement 0: the benchmark measures agreement, it does not refuse
        model.set_precision(args.precision, min_agreement=0.0, threshold=args.threshold, compile=args.compile)
    switch_seconds = time.perf_counter() - started  # the self-check, and compiling
    started = time.perf_counter()  # warm-up; compiled: every batch shape once, so no timed run compiles
    model.inference(texts if args.compile else texts[:4], labels, threshold=args.threshold, batch_size=args.batch_size, long_text="truncate")
    warmup_seconds = time.perf_counter() - started
    timers = [ForwardTimer(model.model.backbone)]
    if model.config.is_bi_encoder:
        timers.append(ForwardTimer(model.model.labels_backbone))
    times = []
    for _ in range(args.repeats):  # the best of several runs: this machine's timings are noisy
        start = time.perf_counter()
        predictions = model.inference(texts, labels, threshold=args.threshold, batch_size=args.batch_size, long_text=args.long_text)
        times.append(time.perf_counter() - start)
    seconds = min(times)
    peak_mib = peak_rss_mib()
    backbone_seconds = sum(timer.seconds for timer in timers)
    result = {"seconds": seconds, "switch_seconds": switch_seconds, "warmup_seconds": warmup_seconds,
              "backbone_share": backbone_seconds / sum(times), "peak_rss_mib": peak_mib, "predictions": predictions,
              "precision": model.precision, "precision_check": model.precision_check}
    json.dump(result, open(args.out, "w"))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--texts", required=True)
    parser.add_argument("--labels", required=True)
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--long-text", default="truncate")
    parser.add_argument("--precision", choices=["fp32", "bf16", "int8"], default="fp32")
    parser.add_argument("--compile", action="store_true", help="bf16: compiled for inference (set_precision(compile=True))")
    parser.add_argument("--reference", action="store_true", help="upstream's computation (tests/parity/reference.py)")
    parser.add_argument("--out", required=True)
    main(parser.parse_args())
