"""One place that turns a tenant's configured backend name into a transcriber.

Kinds: ``pocketsphinx`` (offline, English, :mod:`.sphinx`), ``http`` (an
external speech service, :mod:`.remote`; needs ``url=``), ``none`` (no
words, for tenants that want cues only, :mod:`.null`). Options are the
keyword arguments of the backend's constructor.
"""

from __future__ import annotations

from typing import Any, Final

from gateway.analysis.transcribe.base import Transcriber

__all__ = ["KINDS", "make_transcriber"]

KINDS: Final = ("pocketsphinx", "http", "none")


def make_transcriber(kind: str, **options: Any) -> Transcriber:
    """A transcriber of ``kind`` built with ``options``; ValueError for an unknown kind."""
    if kind == "pocketsphinx":
        from gateway.analysis.transcribe.sphinx import PocketsphinxTranscriber

        return PocketsphinxTranscriber(**options)
    if kind == "http":
        from gateway.analysis.transcribe.remote import HttpTranscriber

        if "url" not in options:
            raise ValueError("the http transcriber needs url=")
        url = options.pop("url")
        return HttpTranscriber(url, **options)
    if kind == "none":
        from gateway.analysis.transcribe.null import NullTranscriber

        return NullTranscriber(**options)
    raise ValueError(f"unknown transcriber {kind!r}; known: {', '.join(KINDS)}")
