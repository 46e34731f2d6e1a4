"""Validation inside the fit loop (fit_loop.py): which rows are held out, how every rank scores its share of them
at a checkpoint, and the best score so far that early stopping and the kept checkpoints follow."""
from __future__ import annotations

import numpy as np
import torch

from .fit_workers import TrainingRows, sum_over_workers

HELD_OUT_SEED = 7_919  # the rows held out of the training rows are drawn with [seed, HELD_OUT_SEED]


def held_out_rows(count: int, fraction: float, most: int | None, seed: int) -> np.ndarray:
    """Sorted row numbers of a seeded random `fraction` of `count` rows (at least one when the fraction is above 0),
    at most `most`: the same rows in every attempt and on any number of workers."""
    size = min(max(1, round(count * fraction)) if fraction > 0 else 0, most or count, count)
    return np.sort(np.random.default_rng([seed, HELD_OUT_SEED]).permutation(count)[:size])


def split_for_validation(section, rows, seed: int, world_size: int) -> tuple[np.ndarray, tuple | None]:
    """(the row numbers to train on, (the rows validated on, their row numbers) or None). With no validation data of
    its own, the validation rows are a seeded share of the training rows, which are then not trained on."""
    every_row = np.arange(len(rows))
    if section is None:
        return every_row, None
    if section.data is not None:
        import ray.train

        given = TrainingRows(ray.train.get_dataset_shard("validation"))
        return every_row, (given, held_out_rows(len(given), 1.0, section.max_examples, seed))
    held = held_out_rows(len(rows), section.fraction, section.max_examples, seed)
    trained = np.setdiff1d(every_row, held)
    if len(trained) < world_size:
        raise ValueError(f"{len(rows)} rows, {len(held)} of them held out for validation: fewer left to train on than the "
                         f"{world_size} workers (lower validation.fraction, or give validation.data)")
    return trained, (rows, held)


def validate(task, engine, held_out: tuple, rank: int, world_size: int, batch_size: int, device: torch.device, autocast) -> dict:
    """The task's validation metrics over the held-out rows: this rank scores rows rank, rank + world_size, ... in
    batches of `batch_size`, in eval mode without gradients, and the counts of all ranks are summed in one collective
    (a rank with no rows adds zeros)."""
    rows, row_ids = held_out
    mine = row_ids[rank::world_size]
    counts = dict.fromkeys(task.validation_keys, 0.0)
    engine.module.eval()
    try:
        with torch.no_grad(), autocast:
            for start in range(0, len(mine), batch_size):
                for key, value in task.validate(engine, rows.take(mine[start:start + batch_size]), device).items():
                    counts[key] += value
    finally:
        engine.module.train()
    values = torch.tensor([counts[key] for key in task.validation_keys], dtype=torch.float64).to(device)
    summed = sum_over_workers(values, world_size).tolist()
    return task.validation_metrics(dict(zip(task.validation_keys, summed)))


def record_validation(state: dict, scores: dict, score_key: str, patience: int | None) -> dict:
    """Updates the loop state with this checkpoint's validation `scores`; returns the metrics that report the best so
    far. The best checkpoint
    is the one with the highest score, the latest of equal ones (as Ray Train ranks the checkpoints it keeps); a
    validation counts as an improvement only with a score above every earlier one, and `patience` validations in a
    row without one stop the run."""
    score, best = scores[score_key], state["best"]
    improved = best is None or score > best["score"]
    if best is None or score >= best["score"]:
        state["best"] = {"step": state["step"], "score": score}
    state["stale_validations"] = 0 if improved else state["stale_validations"] + 1
    state["stopped_early"] = patience is not None and state["stale_validations"] >= patience
    state["validation_history"].append({"step": state["step"], **scores})
    return {"best_step": state["best"]["step"], f"best_{score_key}": state["best"]["score"],
            "validations_without_improvement": state["stale_validations"], "stopped_early": state["stopped_early"]}
