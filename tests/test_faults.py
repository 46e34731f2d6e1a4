"""corpus/faults.py: which failures are transient (retried, never committed) and which are bad input (an error row)."""
import errno
import gzip
import zlib

import pytest

from corpus.faults import DeviceFault, TransientFault, is_device_error, is_transient, is_transient_row_error, retry_transient


def test_storage_network_and_device_faults_are_transient_and_bad_bytes_are_not():
    import aiohttp
    import botocore.exceptions

    transient = [ConnectionResetError(errno.ECONNRESET, "reset"), TimeoutError("read timed out"), OSError(errno.EIO, "Input/output error"),
                 OSError(errno.EBUSY, "Please reduce your request rate."), aiohttp.ClientPayloadError("Response payload is not completed"),
                 botocore.exceptions.EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
                 RuntimeError("CUDA error: an illegal memory access was encountered"), TransientFault("persisted")]
    permanent = [EOFError("Compressed file ended before the end-of-stream marker was reached"), zlib.error("invalid stored block lengths"),
                 gzip.BadGzipFile("Not a gzipped file"), FileNotFoundError(errno.ENOENT, "missing"), PermissionError(errno.EACCES, "denied"),
                 UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), ValueError("a program error"), KeyError("text")]
    assert [is_transient(error) for error in transient] == [True] * len(transient)
    assert [is_transient(error) for error in permanent] == [False] * len(permanent)
    assert is_device_error(RuntimeError("CUBLAS_STATUS_EXECUTION_FAILED when calling cublasGemmEx"))
    assert not is_device_error(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))  # a long document can do that


def test_retry_transient_backs_off_then_succeeds_or_names_what_persisted_and_raises_bad_input_at_once():
    delays, calls = [], []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")
        return "read"

    assert retry_transient(flaky, "reading s3://b/k", sleep=delays.append) == "read" and len(calls) == 3
    assert len(delays) == 2 and 0.25 <= delays[0] <= 0.5 and 0.5 <= delays[1] <= 1.0  # exponential, with jitter

    def down():
        raise TimeoutError("timed out")

    with pytest.raises(TransientFault, match=r"reading s3://b/k: TimeoutError: timed out \(after 4 attempts\)"):
        retry_transient(down, "reading s3://b/k", attempts=4, sleep=delays.append)

    def truncated():
        calls.append(1)
        raise EOFError("Compressed file ended")

    calls.clear()
    with pytest.raises(EOFError):
        retry_transient(truncated, "reading", sleep=delays.append)
    assert len(calls) == 1

    def device():
        raise DeviceFault("CUDA error")

    with pytest.raises(DeviceFault):  # the actor must end, not wait
        retry_transient(device, "predicting", sleep=delays.append)


def test_annotation_rows_a_rerun_can_change():
    assert [is_transient_row_error(error) for error in ("inference_error: engine dead", "connection_error: refused (after 3 retries)",
                                                        "http_503: busy", "http_429: slow down", "http_400: bad request", "invalid_json",
                                                        "prompt_too_long: 9000 prompt tokens", None)] == [True] * 4 + [False] * 4
