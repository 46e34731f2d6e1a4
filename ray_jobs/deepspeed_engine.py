"""A DeepSpeed engine around a model and its client optimizer, shared by the train and distill loops.

`config` needs `max_steps`, `optim` (warmup_ratio, schedule, max_grad_norm) and `scale` (micro_batch_size,
grad_accum, zero_stage, precision, use_gpu): both jobs' configs have them.
"""
from __future__ import annotations

import torch

from gliner.optim import lr_multiplier


def initialize_engine(deepspeed, model: torch.nn.Module, optimizer: torch.optim.Optimizer, config, world_size: int):
    """Warm-up then decay schedule, ZeRO stage, precision, micro-batch and accumulation from the config."""
    optim, scale = config.optim, config.scale
    warmup = int(optim.warmup_ratio * config.max_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_multiplier(step, config.max_steps, warmup, optim.schedule))
    ds_config = {
        "train_micro_batch_size_per_gpu": scale.micro_batch_size,
        "gradient_accumulation_steps": scale.grad_accum,
        "train_batch_size": scale.micro_batch_size * scale.grad_accum * world_size,
        "gradient_clipping": optim.max_grad_norm,
        "zero_optimization": {"stage": scale.zero_stage},
        "bf16": {"enabled": scale.precision == "bf16"},
        "fp16": {"enabled": scale.precision == "fp16"},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,
    }
    deepspeed.init_distributed(dist_backend="nccl" if scale.use_gpu else "gloo")
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=scheduler, config=ds_config)
    if world_size == 1 and scale.zero_stage == 0:
        engine.enable_backward_allreduce = False  # nothing to average with; skips flattening and copying every gradient
    return engine
