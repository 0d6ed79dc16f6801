"""Transcription by an external speech service over HTTP.

The exchange, one request per party:

Request::

    POST {url}?language=en&party=caller
    Content-Type: audio/wav
    Accept: application/json
    Authorization: Bearer <token>          (only when a token is configured)

    <a 16-bit mono PCM RIFF/WAVE file at the call's own sample rate>

Response, status 200, ``Content-Type: application/json``::

    {"words": [{"text": "four", "start": 1.23, "end": 1.5, "confidence": 0.9}, ...]}

``start`` and ``end`` are seconds from the start of the posted audio
(numbers, ``0 <= start <= end``); ``confidence`` is optional, in [0, 1],
1.0 when absent; ``text`` is a non-empty string (lower-cased here). Other
members of the object and of each word are ignored. Words come back sorted
by start time whatever order the service sent.

Failures (every one a :class:`~gateway.analysis.transcribe.base.TranscriptionError`):

- a connection error, a timeout, or a 5xx status is retried: up to
  ``retries`` more attempts, waiting ``backoff_s * 2**n`` (capped at
  ``max_backoff_s``) before attempt ``n + 1``, or the ``Retry-After`` the
  service sent on a 503 when that is shorter than the cap (RFC 9110 section
  10.2.3, delay-seconds form). When attempts run out the error names the
  last failure (:class:`ServiceUnavailable`);
- a 4xx status is not retried: the request itself is wrong (bad token,
  unsupported audio) and would fail again (:class:`ServiceRejected`, with
  the status and the start of the body);
- a 200 whose body is not JSON of the shape above is not retried
  (:class:`MalformedResponse`).

The client is the standard library's :mod:`urllib.request`, so the backend
adds no runtime dependency; each request has its own ``timeout_s`` (connect
and each read).
"""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from dsp.wav import encode_wav
from gateway.analysis.transcribe.base import (
    TranscriptionError,
    Word,
    check_audio,
    words_in_order,
)

__all__ = [
    "HttpTranscriber",
    "MalformedResponse",
    "ServiceRejected",
    "ServiceUnavailable",
    "parse_words",
]

_ERROR_BODY_CHARS: Final = 200
"""How much of an error response's body goes into the exception's message."""


class ServiceUnavailable(TranscriptionError):
    """The service could not be reached or kept failing (5xx, timeouts) until retries ran out."""


class ServiceRejected(TranscriptionError):
    """The service refused the request with a 4xx status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class MalformedResponse(TranscriptionError):
    """The service answered 200 with a body that is not the documented JSON."""


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise MalformedResponse(f"{what} is not a finite number: {value!r}")
    return float(value)


def parse_words(body: bytes) -> list[Word]:
    """The words of a response body, or :class:`MalformedResponse` naming what is wrong."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MalformedResponse(f"response is not JSON: {error}") from None
    if not isinstance(document, dict) or not isinstance(document.get("words"), list):
        raise MalformedResponse("response is not an object with a 'words' array")
    words: list[Word] = []
    for index, item in enumerate(document["words"]):
        where = f"words[{index}]"
        if not isinstance(item, dict):
            raise MalformedResponse(f"{where} is not an object")
        text = item.get("text")
        if not isinstance(text, str) or not text.strip():
            raise MalformedResponse(f"{where}.text is not a non-empty string")
        start = _number(item.get("start"), f"{where}.start")
        end = _number(item.get("end"), f"{where}.end")
        confidence = _number(item.get("confidence", 1.0), f"{where}.confidence")
        if not 0.0 <= start <= end:
            raise MalformedResponse(f"{where} times must satisfy 0 <= start <= end")
        if not 0.0 <= confidence <= 1.0:
            raise MalformedResponse(f"{where}.confidence is outside [0, 1]")
        words.append(Word(text.strip().lower(), start, end, confidence))
    return words_in_order(words)


class _Retry(Exception):
    """An attempt that failed in a way worth repeating; ``delay_s`` is the service's hint."""

    def __init__(self, reason: str, delay_s: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay_s = delay_s


def _retry_after(value: str | None) -> float | None:
    """Seconds of a ``Retry-After`` header in its delay-seconds form (RFC 9110 10.2.3)."""
    if value is None or not value.strip().isdigit():
        return None
    return float(value.strip())


class HttpTranscriber:
    """Posts each party's audio to a speech service; the module docstring gives the exchange."""

    name = "http"

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        language: str = "en",
        timeout_s: float = 30.0,
        retries: int = 3,
        backoff_s: float = 0.5,
        max_backoff_s: float = 8.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"speech service URL must be http(s)://host/..., got {url!r}")
        if timeout_s <= 0 or retries < 0 or backoff_s < 0 or max_backoff_s < 0:
            raise ValueError("timeout must be positive; retries and backoff not negative")
        self.url = url
        self.language = language
        self._token = token
        self._timeout_s = timeout_s
        self._retries = retries
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._sleep = sleep

    def _request(self, body: bytes, party: str) -> urllib.request.Request:
        query = urllib.parse.urlencode({"language": self.language, "party": party})
        separator = "&" if urllib.parse.urlsplit(self.url).query else "?"
        headers = {"Content-Type": "audio/wav", "Accept": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        return urllib.request.Request(
            f"{self.url}{separator}{query}", data=body, headers=headers, method="POST"
        )

    def _attempt(self, request: urllib.request.Request) -> bytes:
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as response:
                return bytes(response.read())
        except urllib.error.HTTPError as error:
            with error:
                detail = error.read(_ERROR_BODY_CHARS).decode("utf-8", "replace")
            if error.code >= 500:
                raise _Retry(
                    f"status {error.code}", _retry_after(error.headers.get("Retry-After"))
                ) from None
            raise ServiceRejected(
                f"speech service refused the request: status {error.code}: {detail}".rstrip(),
                error.code,
            ) from None
        except TimeoutError as error:
            raise _Retry(f"timed out after {self._timeout_s:g} s ({error})") from None
        except urllib.error.URLError as error:
            if isinstance(error.reason, TimeoutError):
                raise _Retry(f"timed out after {self._timeout_s:g} s") from None
            raise _Retry(f"connection failed: {error.reason}") from None
        except (ConnectionError, OSError) as error:
            raise _Retry(f"connection failed: {error}") from None

    def _delay(self, attempt: int, hint: float | None) -> float:
        delay = min(self._backoff_s * 2**attempt, self._max_backoff_s)
        if hint is not None:
            delay = min(hint, self._max_backoff_s)
        return delay

    def transcribe(self, pcm: npt.NDArray[np.int16], sample_rate: int, party: str) -> list[Word]:
        """The service's words for ``pcm``; retries and errors as the module docstring says."""
        pcm = check_audio(pcm, sample_rate)
        request = self._request(encode_wav(pcm, sample_rate), party)
        attempts = self._retries + 1
        for attempt in range(attempts):
            try:
                body = self._attempt(request)
            except _Retry as failure:
                if attempt + 1 == attempts:
                    raise ServiceUnavailable(
                        f"speech service failed {attempts} time(s); last: {failure.reason}"
                    ) from None
                self._sleep(self._delay(attempt, failure.delay_s))
                continue
            return parse_words(body)
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        """Nothing is held between requests."""
