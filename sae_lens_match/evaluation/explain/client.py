"""A minimal client for any OpenAI-compatible chat-completions endpoint (standard library only).

``POST {base_url}/chat/completions`` with ``{"model", "messages", ...}``; the answer is
``choices[0].message.content``. Works with OpenAI, vLLM, llama.cpp's server, Ollama's
OpenAI API, LM Studio, etc.

Configuration, arguments first, then the environment:

- base URL: ``base_url`` / ``SAE_LENS_MATCH_LLM_BASE_URL`` / ``OPENAI_BASE_URL``
- model: ``model`` / ``SAE_LENS_MATCH_LLM_MODEL`` / ``OPENAI_MODEL``
- key: ``api_key`` / ``SAE_LENS_MATCH_LLM_API_KEY`` / ``OPENAI_API_KEY`` (optional: local
  servers often need none)

Retries with exponential backoff on connection errors, timeouts, HTTP 429 and 5xx; other
HTTP errors fail at once. Answers can be cached on disk (one JSON file per request, keyed
by a SHA-256 of base URL, model, messages and parameters; written atomically), so a rerun
costs nothing and gives the same labels.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from sae_lens_match.atomic import write_json

Message = Mapping[str, str]


class ChatError(RuntimeError):
    """Anything that went wrong talking to a chat-completions endpoint."""


class ChatConfigError(ChatError):
    """The client is missing its base URL or model."""


class ChatUnreachableError(ChatError):
    """The endpoint could not be reached (connection refused, DNS, timeouts) after all retries."""


class ChatHTTPError(ChatError):
    """The endpoint answered with an HTTP error status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class ChatResponseError(ChatError):
    """The endpoint answered, but not with a chat completion (malformed JSON, missing fields)."""


def _env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


class ChatClient:
    """Chat completions over HTTP with retries, timeouts and an optional on-disk cache.

    Args:
        base_url: e.g. ``"https://api.openai.com/v1"`` or ``"http://127.0.0.1:8000/v1"``.
        model: model name sent with each request.
        api_key: sent as ``Authorization: Bearer <key>`` when given.
        timeout: seconds per HTTP request.
        max_retries: retries after the first attempt on retryable failures.
        backoff: seconds before the first retry; doubles each time.
        cache_dir: directory for cached answers (``None``: no cache).
        sleep: how to wait between retries (tests pass a no-op).

    Raises:
        ChatConfigError: no base URL or model, from the arguments or the environment.
    """

    def __init__(
        self,
        base_url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        max_retries: int = 3,
        backoff: float = 1.0,
        cache_dir: str | Path | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        base_url = base_url or _env("SAE_LENS_MATCH_LLM_BASE_URL", "OPENAI_BASE_URL")
        model = model or _env("SAE_LENS_MATCH_LLM_MODEL", "OPENAI_MODEL")
        if not base_url or not model:
            raise ChatConfigError(
                "An LLM endpoint needs a base URL and a model: pass base_url=/model= or set "
                "SAE_LENS_MATCH_LLM_BASE_URL (or OPENAI_BASE_URL) and SAE_LENS_MATCH_LLM_MODEL (or OPENAI_MODEL)."
            )
        if timeout <= 0 or max_retries < 0 or backoff < 0:
            raise ValueError("timeout must be > 0, max_retries and backoff >= 0.")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key or _env("SAE_LENS_MATCH_LLM_API_KEY", "OPENAI_API_KEY")
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.sleep = sleep
        self.n_requests = 0  # HTTP requests sent (cache hits send none)

    @property
    def url(self) -> str:
        return f"{self.base_url}/chat/completions"

    def cache_key(self, messages: Sequence[Message], params: Mapping[str, Any]) -> str:
        """SHA-256 of what determines the answer (the key is never part of it)."""
        text = json.dumps({"base_url": self.base_url, "model": self.model, "messages": list(messages), "params": dict(params)}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    def complete(self, messages: Sequence[Message], **params: Any) -> str:
        """Send ``messages`` and return the assistant's text.

        Args:
            messages: ``[{"role": "system"|"user"|"assistant", "content": str}, ...]``.
            **params: extra request fields (``temperature``, ``max_tokens``, ...).

        Raises:
            ChatUnreachableError: no connection after all retries.
            ChatHTTPError: an HTTP error status (after retries for 429/5xx).
            ChatResponseError: the body is not a chat completion (after retries).
        """
        for m in messages:
            if not isinstance(m, Mapping) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
                raise ValueError(f"each message needs string 'role' and 'content', got {m!r}.")
        key = self.cache_key(messages, params)
        cached = self._cache_read(key)
        if cached is not None:
            return cached
        body = json.dumps({"model": self.model, "messages": list(messages), **params}).encode()
        last: ChatError | None = None
        for attempt in range(self.max_retries + 1):
            if attempt:
                self.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                text = self.redact(self._parse(self._post(body)))
            except (ChatUnreachableError, ChatResponseError) as err:
                last = err
                continue
            except ChatHTTPError as err:
                last = err
                if err.status == 429 or err.status >= 500:
                    continue
                raise
            self._cache_write(key, text)
            return text
        assert last is not None
        if isinstance(last, ChatUnreachableError):
            raise ChatUnreachableError(f"{last} (gave up after {self.max_retries + 1} attempts)") from last
        raise last

    def _post(self, body: bytes) -> bytes:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        self.n_requests += 1
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.read()
        except urllib.error.HTTPError as err:
            detail = self.redact(err.read()[:300].decode(errors="replace"))
            raise ChatHTTPError(f"{self.url} answered HTTP {err.code}: {detail}", err.code) from err
        except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError) as err:
            reason = getattr(err, "reason", err)
            raise ChatUnreachableError(
                f"Cannot reach the chat endpoint {self.url} ({type(reason).__name__}: {reason}); check the base URL "
                "(SAE_LENS_MATCH_LLM_BASE_URL) and that the server is running, or use the offline heuristic judge."
            ) from err

    def _parse(self, raw: bytes) -> str:
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ChatResponseError(self.redact(f"{self.url} did not answer JSON: {raw[:200]!r}")) from err
        try:
            content = data["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as err:
            raise ChatResponseError(self.redact(f"{self.url} answered JSON without choices[0].message.content: {str(data)[:200]}")) from err
        if not isinstance(content, str):
            raise ChatResponseError(self.redact(f"{self.url} answered a non-text message content: {content!r}"))
        return content

    def redact(self, text: str) -> str:
        """``text`` with the API key blanked out: a server may echo the request's headers, and
        nothing it says may carry the key into a message, a log or a result file."""
        return text.replace(self.api_key, "[redacted]") if self.api_key else text

    def _cache_path(self, key: str) -> Path | None:
        return None if self.cache_dir is None else self.cache_dir / key[:2] / f"{key}.json"

    def _cache_read(self, key: str) -> str | None:
        path = self._cache_path(key)
        if path is None or not path.exists():
            return None
        try:
            entry = json.loads(path.read_text())
            return entry["content"] if isinstance(entry.get("content"), str) else None
        except (OSError, json.JSONDecodeError, AttributeError):
            return None  # a damaged cache entry is just a miss

    def _cache_write(self, key: str, content: str) -> None:
        path = self._cache_path(key)
        if path is not None:
            write_json(path, {"base_url": self.base_url, "model": self.model, "content": content})
