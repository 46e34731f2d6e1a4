"""A real S3-compatible server on 127.0.0.1 for tests: moto's server mode in a process of its own, behind the
fault-injecting proxy of tests/fault_proxy.py.

Every S3 client of the test process and of the processes it starts (Ray's workers inherit the environment of the
Ray that a test starts after this) reaches it through the standard AWS variables, AWS_ENDPOINT_URL among them: s3fs
(aiobotocore), boto3 and pyarrow's own S3 file system read them, as they would a real endpoint's.
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from contextlib import contextmanager

ENVIRONMENT = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
               "AWS_EC2_METADATA_DISABLED": "true"}


class S3Server:
    """moto's server, reached through `proxy` (whose `inject` adds network faults); `endpoint` is the proxy's."""

    def __init__(self, port: int):
        from fault_proxy import FaultProxy

        self.server_endpoint = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_until_up()
        self.proxy = FaultProxy(port)
        self.endpoint = self.proxy.endpoint

    def _wait_until_up(self, timeout_s: float = 60) -> None:
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto's server exited with {self.process.returncode}")
            try:
                urllib.request.urlopen(self.server_endpoint, timeout=1).close()
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"moto's server did not answer at {self.server_endpoint} within {timeout_s} s")

    def environment(self) -> dict[str, str]:
        return {**ENVIRONMENT, "AWS_ENDPOINT_URL": self.endpoint}

    def new_bucket(self, prefix: str = "test") -> str:
        """A fresh, empty bucket; returns its s3:// URL."""
        import boto3

        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        boto3.client("s3", endpoint_url=self.server_endpoint, **_credentials()).create_bucket(Bucket=name)
        return f"s3://{name}"

    def keys(self, url: str) -> list[str]:
        """Every key under an s3:// URL, read fresh from the server (no client's cache)."""
        import boto3

        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        client = boto3.client("s3", endpoint_url=self.server_endpoint, **_credentials())
        keys = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys += [item["Key"] for item in page.get("Contents", [])]
        return sorted(keys)

    def stop(self) -> None:
        self.proxy.stop()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _credentials() -> dict:
    return {"aws_access_key_id": ENVIRONMENT["AWS_ACCESS_KEY_ID"], "aws_secret_access_key": ENVIRONMENT["AWS_SECRET_ACCESS_KEY"],
            "region_name": ENVIRONMENT["AWS_DEFAULT_REGION"]}


class S3Calls(logging.Handler):
    """Counts the S3 API calls s3fs makes in this process (its `CALL: <operation>` debug lines), by operation."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.operations: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("CALL:"):
            self.operations.append(record.args[0])


@contextmanager
def counted_s3_calls():
    logger = logging.getLogger("s3fs")
    calls, level = S3Calls(), logger.level
    logger.addHandler(calls)
    logger.setLevel(logging.DEBUG)
    try:
        yield calls
    finally:
        logger.removeHandler(calls)
        logger.setLevel(level)


@contextmanager
def environment(values: dict[str, str]):
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
