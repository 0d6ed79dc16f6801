"""Transcript redaction: spoken-form PII and payment data found in ASR word lists, and muted.

Pure, synchronous and vectorised over token arrays; imports nothing of the
gateway. The stages:

1. :func:`~dsp.redact.tokens.tokenize`: a batch of word lists to token arrays;
2. :func:`~dsp.redact.scan.scan`: numbers as runs of digit tokens (spoken,
   written or mixed), their features and context keywords;
3. :class:`~dsp.redact.registry.Registry`: one detector per entity type
   scores them (card, CVV, expiry, PIN, SSN, bank account, ABA routing,
   IBAN, phone, e-mail, date of birth, and a fail-closed catch-all);
4. :class:`~dsp.redact.redactor.Redactor`: the redacted text, word list and
   spans of every transcript;
5. :func:`~dsp.redact.audio.mute_ranges` and
   :func:`~dsp.redact.audio.mute_audio`: the spans' times silenced in audio.
"""

from __future__ import annotations

from dsp.redact.audio import mute_audio, mute_ranges
from dsp.redact.redactor import Redaction, Redactor, Span, redact, redact_batch
from dsp.redact.registry import Registry, SpanTable
from dsp.redact.scan import ScanConfig, scan
from dsp.redact.tokens import TokenBatch, Word, tokenize

ENTITIES = Registry().entities
"""Every entity type the default registry finds."""

__all__ = [
    "ENTITIES",
    "Redaction",
    "Redactor",
    "Registry",
    "ScanConfig",
    "Span",
    "SpanTable",
    "TokenBatch",
    "Word",
    "mute_audio",
    "mute_ranges",
    "redact",
    "redact_batch",
    "scan",
    "tokenize",
]
