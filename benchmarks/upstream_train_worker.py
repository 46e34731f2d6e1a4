"""Runs in the upstream venv (gliner==0.2.29): times upstream's `train_model` on a JSON list of examples.
Called by train_throughput.py; never imports this project's code."""
import argparse
import json
import os
import time
import warnings

os.environ["HF_HUB_OFFLINE"] = "1"
warnings.filterwarnings("ignore")

import torch  # noqa: E402
from gliner import GLiNER, GLiNERConfig  # noqa: E402
from gliner.model import _get_trainer_classes  # noqa: E402
from transformers import TrainerCallback  # noqa: E402


class StepClock(TrainerCallback):
    """Wall time at the end of every step, to measure throughput after the warm-up steps."""

    def __init__(self):
        self.times = []

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter())


def main(args) -> None:
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    examples = json.load(open(args.train_data))
    config = GLiNERConfig(model_name=args.backbone, hidden_size=args.hidden_size, max_len=args.max_len, max_width=args.max_width, dropout=0.1)
    model = GLiNER.from_config(config, backbone_from_pretrained=True, local_files_only=True)
    clock = StepClock()
    training_args = model.create_training_args(
        output_dir=args.out + ".trainer", max_steps=args.steps, learning_rate=5e-5, others_lr=5e-4,
        per_device_train_batch_size=args.batch_size, use_cpu=True, save_steps=10**9, logging_steps=10**9,
        dataloader_num_workers=0, warmup_ratio=0.05, lr_scheduler_type="cosine", max_grad_norm=10.0,
    )
    # What `train_model` does, plus a step clock (train_model takes no callbacks).
    trainer_class, _ = _get_trainer_classes()
    trainer = trainer_class(model=model, args=training_args, train_dataset=examples, eval_dataset=None,
                            data_collator=model._create_data_collator(), processing_class=model.data_processor.transformer_tokenizer,
                            callbacks=[clock])
    trainer.train()
    warm = args.warmup_steps
    seconds = clock.times[-1] - clock.times[warm - 1]
    json.dump({"steps": len(clock.times), "timed_steps": len(clock.times) - warm, "seconds": seconds,
               "examples_per_s": (len(clock.times) - warm) * args.batch_size / seconds}, open(args.out, "w"))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--backbone", required=True)
    parser.add_argument("--train-data", required=True)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--warmup-steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--hidden-size", type=int, default=384)
    parser.add_argument("--max-len", type=int, default=128)
    parser.add_argument("--max-width", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", required=True)
    main(parser.parse_args())
