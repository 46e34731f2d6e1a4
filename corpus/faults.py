"""Transient faults and permanent bad input, told apart in one place.

A **permanent** failure is a property of the input: a truncated gzip, malformed XML or JSON, undecodable bytes, a
missing file, a document the model cannot take. Rerunning cannot change it, so it becomes an error row with its
reason and the unit is committed.

A **transient** fault says nothing about the input: a connection reset, throttling, a time-out, an I/O error from a
network mount, a GPU that failed. It is retried with backoff (`retry_transient`); if it persists, the unit fails
without a marker (nothing of it is committed as final) and a rerun does it again.
"""
from __future__ import annotations

import errno
import gzip
import random
import time
import zlib
from collections.abc import Callable
from typing import TypeVar

Result = TypeVar("Result")

RETRY_ATTEMPTS = 5
RETRY_FIRST_DELAY_S = 0.5
RETRY_MAX_DELAY_S = 20.0

# OSError subclasses that describe the input itself (a file that is not there, a directory, no right to read it).
PERMANENT_OS_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError, gzip.BadGzipFile)
PERMANENT_ERRNOS = {errno.ENOENT, errno.EISDIR, errno.ENOTDIR, errno.EACCES, errno.EPERM, errno.ENAMETOOLONG}
# Client libraries whose own exceptions are about the network or the service, never about the bytes they carry.
NETWORK_MODULES = ("aiohttp", "botocore", "aiobotocore", "urllib3", "requests", "google.api_core", "google.auth", "s3fs", "gcsfs")
# Messages torch gives for a device that is broken, not for an input it cannot take.
DEVICE_MESSAGES = ("CUDA error", "CUBLAS_STATUS", "CUDNN_STATUS", "cuDNN error", "NCCL error", "device-side assert",
                   "an illegal memory access", "unspecified launch failure", "ECC error", "GPU is lost", "HIP error")


# The annotation rows' errors (`synth.annotation_rows`, `synth.chat_endpoint`) that a rerun can change: the engine
# failed (vLLM's per-row inference error), the endpoint could not be reached or timed out, or answered with a status
# that says "try again". Any other (output that does not parse, a document too long for the prompt, HTTP 400) is final.
TRANSIENT_ROW_ERRORS = ("inference_error", "connection_error", "http_408", "http_409", "http_429", "http_5")


class TransientFault(Exception):
    """A fault that persisted through its retries; its unit is not committed."""


class DeviceFault(TransientFault):
    """The model's device is broken: the actor that holds it must end so that Ray replaces it."""


def is_transient(error: BaseException) -> bool:
    """True for storage, network and device faults; False for bad input and for program errors."""
    if isinstance(error, TransientFault) or is_device_error(error):
        return True
    if isinstance(error, (EOFError, zlib.error, UnicodeError)):
        return False  # a truncated or corrupt stream, undecodable bytes: the bytes are bad
    if isinstance(error, PERMANENT_OS_ERRORS):
        return False
    if isinstance(error, (ConnectionError, TimeoutError)):
        return True
    if isinstance(error, OSError):
        return error.errno not in PERMANENT_ERRNOS
    return any(type(error).__module__.startswith(module) for module in NETWORK_MODULES)


def is_device_error(error: BaseException) -> bool:
    """A sticky device error by its message (an out-of-memory error is not one: a long document can cause it, and
    the actor's probe document tells the two apart)."""
    message = str(error)
    return any(text in message for text in DEVICE_MESSAGES)


def retry_transient(function: Callable[[], Result], what: str, attempts: int = RETRY_ATTEMPTS, first_delay_s: float = RETRY_FIRST_DELAY_S,
                    sleep: Callable[[float], None] = time.sleep) -> Result:
    """function(), retried on transient faults with exponential backoff and jitter; TransientFault naming `what`
    once they persist. Permanent failures and program errors are raised at once."""
    for attempt in range(1, attempts + 1):
        try:
            return function()
        except Exception as error:  # noqa: BLE001 (sorted below)
            if not is_transient(error) or isinstance(error, DeviceFault):
                raise
            if attempt == attempts:
                raise TransientFault(f"{what}: {describe(error)} (after {attempts} attempts)") from error
            sleep(min(RETRY_MAX_DELAY_S, first_delay_s * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0))
    raise AssertionError("unreachable")


def describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:500]


def is_transient_row_error(error: str | None) -> bool:
    """An annotation row's error that a rerun can change (TRANSIENT_ROW_ERRORS)."""
    return bool(error) and error.startswith(TRANSIENT_ROW_ERRORS)
