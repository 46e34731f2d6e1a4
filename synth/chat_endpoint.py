"""One chat completion from an OpenAI-compatible HTTP endpoint (a hosted teacher, `vllm serve`, ...), stdlib only.

The request asks for structured output with the annotation JSON schema (`response_format` of type `json_schema`).
Transient failures (connection errors, timeouts, HTTP 408/409/429/5xx) are retried with exponential back-off; any
other failure, or the last retry's, comes back as `ChatResult.error` rather than an exception, so one bad request
costs one error row.
"""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class ChatResult:
    text: str | None
    input_tokens: int = 0
    output_tokens: int = 0
    error: str | None = None


@dataclass(frozen=True)
class ChatEndpoint:
    base_url: str  # e.g. http://127.0.0.1:8000/v1
    model: str
    api_key: str | None = None
    timeout_s: float = 300.0
    max_retries: int = 3
    backoff_s: float = 1.0

    def complete(self, messages: list[dict], sampling: dict, json_schema: dict | None) -> ChatResult:
        body = {"model": self.model, "messages": messages, **sampling}
        if json_schema is not None:
            body["response_format"] = {"type": "json_schema", "json_schema": {"name": "annotation", "schema": json_schema, "strict": True}}
        payload = json.dumps(body).encode("utf-8")
        error = None
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            result, retryable = self._post(payload)
            if result.error is None or not retryable:
                return result
            error = result.error
        return ChatResult(None, error=f"{error} (after {self.max_retries} retries)")

    def _post(self, payload: bytes) -> tuple[ChatResult, bool]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.base_url.rstrip("/") + "/chat/completions", payload, headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return _parse_response(response.read()), False
        except urllib.error.HTTPError as error:
            detail = error.read()[:300].decode("utf-8", "replace")
            return ChatResult(None, error=f"http_{error.code}: {detail}"), error.code in RETRYABLE_STATUS
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as error:
            return ChatResult(None, error=f"connection_error: {error}"), True


def _parse_response(body: bytes) -> ChatResult:
    try:
        reply = json.loads(body)
        text = reply["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as error:
        return ChatResult(None, error=f"bad_response: {type(error).__name__}: {body[:200]!r}")
    usage = reply.get("usage") or {}
    return ChatResult(text, usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0))
