"""Batches onto the model's device ahead of the forward: while the GPU runs batch i, a thread pins batch i + 1's
tensors and starts their copy on a stream of its own, so the forward never waits for a host-to-device copy. On a
CPU the batches pass through as they are."""
from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator

import torch

from .inputs import to_device

AHEAD = 2  # batches copied ahead of the one in the forward


def on_device(batches: Iterable, device: torch.device) -> Iterator[tuple[object, dict[str, torch.Tensor]]]:
    """(batch, its inputs on `device`) for each batch (anything with an `inputs` dict of host tensors)."""
    if device.type != "cuda":
        for batch in batches:
            yield batch, _as_int64(batch.inputs)
        return
    yield from _copied_ahead(batches, device)


def _copied_ahead(batches: Iterable, device: torch.device) -> Iterator[tuple[object, dict[str, torch.Tensor]]]:
    ready: queue.Queue = queue.Queue(maxsize=AHEAD)
    stream = torch.cuda.Stream(device=device)
    stop = threading.Event()
    done = object()

    def hand_over(item) -> bool:
        """Queue an item for the consumer; False once the consumer has stopped."""
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def copy_all() -> None:
        try:
            with torch.cuda.stream(stream):
                for batch in batches:
                    inputs = _as_int64(to_device(batch.inputs, device))
                    copied = torch.cuda.Event()
                    copied.record(stream)
                    if not hand_over((batch, inputs, copied)):
                        return
            hand_over(done)
        except BaseException as error:  # noqa: BLE001 (the consumer raises it)
            hand_over(error)

    thread = threading.Thread(target=copy_all, name="gliner-device-feed", daemon=True)
    thread.start()
    try:
        while (item := ready.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            batch, inputs, copied = item
            compute = torch.cuda.current_stream(device)
            compute.wait_event(copied)
            for tensor in inputs.values():
                if tensor.is_cuda:
                    tensor.record_stream(compute)  # the copy stream's memory is in use on this stream now
            yield batch, inputs
    finally:
        stop.set()
        thread.join()


def _as_int64(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Index tensors as int64 (a job's batches travel as int32; on a GPU this widening runs on the device)."""
    return {key: tensor.long() if tensor.dtype != torch.int64 else tensor for key, tensor in inputs.items()}
