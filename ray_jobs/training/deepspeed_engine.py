"""A DeepSpeed engine around a model and its client optimizer, shared by the train and distill jobs' fit loop.

`config` needs `max_steps`, `optim` (warmup_ratio, schedule, max_grad_norm) and `scale` (micro_batch_size,
grad_accum, zero_stage, use_gpu): both jobs' configs have them.

The engine always holds fp32 weights, gradients and optimizer state. DeepSpeed's own `bf16`/`fp16` sections are
never turned on: they cast the parameters themselves, so the forward, the loss and gradient accumulation would all
run in half precision and checkpoints would be saved in it. Half precision is the fit loop's autocast instead.
"""
from __future__ import annotations

import torch

from gliner.training import lr_multiplier


def deepspeed_config(config, world_size: int) -> dict:
    optim, scale = config.optim, config.scale
    return {
        "train_micro_batch_size_per_gpu": scale.micro_batch_size,
        "gradient_accumulation_steps": scale.grad_accum,
        "train_batch_size": scale.micro_batch_size * scale.grad_accum * world_size,
        "gradient_clipping": optim.max_grad_norm,
        "zero_optimization": {"stage": scale.zero_stage},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,
    }


def initialize_engine(deepspeed, model: torch.nn.Module, optimizer: torch.optim.Optimizer, config, world_size: int):
    """Warm-up then decay schedule, ZeRO stage, micro-batch and accumulation from the config."""
    optim = config.optim
    warmup = int(optim.warmup_ratio * config.max_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_multiplier(step, config.max_steps, warmup, optim.schedule))
    if not config.scale.use_gpu:
        skip_shared_memory_collectives(deepspeed)
    deepspeed.init_distributed(dist_backend="nccl" if config.scale.use_gpu else "gloo")
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=scheduler, config=deepspeed_config(config, world_size))
    if world_size == 1 and config.scale.zero_stage == 0:
        engine.enable_backward_allreduce = False  # nothing to average with; skips flattening and copying every gradient
    return engine


def skip_shared_memory_collectives(deepspeed) -> None:
    """On CPU, DeepSpeed's communication backend compiles a shared-memory all-reduce op at start-up, under a lock
    file in the torch extensions directory. A worker killed while it holds that lock (a lost node, a stopped job)
    leaves the file behind, and every later start on that machine then waits on it forever. The op only speeds up
    inference all-reduce; training collectives go through gloo. Marking it incompatible keeps start-up free of
    compilers and locks."""
    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
