"""Benchmark of transcript redaction: speed and per-type accuracy against Presidio and regexes.

Run from the repository root::

    /work/main/.venv/bin/python -m tests.bench.bench_redact
    /work/main/.venv/bin/python -m tests.bench.bench_redact --quick

Method
------
The process pins itself to one CPU (``--cpu``, default the last usable
one), so every figure is one core's. The input is one generated corpus
(``tests.support.spoken_corpus``, ``--transcripts`` call transcripts, seed
``--seed``): ASR word lists with times and segments, spoken and written
numbers, e-mail addresses and IBANs, with near misses (times, amounts,
order numbers). A token is one ASR word. Each speed is the best of
``--repeat`` timed runs after one untimed warm-up, timed as this process's
CPU time (``time.process_time``: on a shared machine, wall time would also
count other processes' turns on the core), with the collector's heap frozen
after the corpus is built (as the gateway freezes its start-up heap).

The labelled corpus is dense: nearly every sentence carries a number. Speeds
are also measured on call-length transcripts: the same generator with
``--talk`` sentences of ordinary conversation mixed into each transcript
(about a five-minute call's worth of words around the same entities), the
kind of input the gateway sees.

Methods, on the same transcripts:

- ``dsp.redact`` (end to end): ``Redactor().redact_batch`` on the whole
  corpus as one batch: words in, redacted text, word list and spans out;
- ``dsp.redact`` (kernel): the array stage alone on the tokenized batch:
  :func:`dsp.redact.scan.scan` and the registry's detection, to a span table;
- Presidio: ``presidio-analyzer``'s predefined pattern recognizers
  (CreditCard, UsSsn, Phone, Email, Iban, UsBank, AbaRouting) called one by
  one with ``nlp_artifacts=None`` on each transcript's text (the words joined
  by spaces): no spaCy model, so no NER and no context enhancement. Every
  result counts (the analyzer's default threshold is 0). The Email
  recognizer's ``tldextract`` is given its bundled public-suffix snapshot
  instead of a download. Presidio runs on the first
  ``--presidio-transcripts`` transcripts (it is slow); its speed is over
  those, its accuracy too;
- regex: one pass of plain regular expressions over the same text (cards as
  13-19 digits with spaces or dashes, SSN ``ddd-dd-dddd``, NANP phones,
  e-mail, IBAN, and any written number of 3+ digits as ``DIGITS``).

Accuracy is entity-level, as in ``tests/unit/dsp/test_redact_accuracy.py``:
recall counts a labelled entity found when all its content words are
redacted and a span of its type overlaps it; precision counts a span correct
when it overlaps a labelled entity of its type (``DIGITS`` spans: any
entity). Character spans (Presidio, regex) are mapped to the words they touch.
Targets: at least 5 million tokens/s end to end, and 100 times Presidio's speed.
"""

from __future__ import annotations

import argparse
import bisect
import gc
import math
import re
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dsp.redact import Redactor, scan, tokenize
from tests.bench.bench_dsp import pin_to_one_cpu
from tests.bench.common import format_table, machine_lines, print_title
from tests.support.spoken_corpus import (
    ENTITY_TYPES,
    LabelledTranscript,
    Score,
    evaluate,
    generate,
)

TARGET_TOKENS_PER_S = 5e6
TARGET_SPEEDUP = 100.0

PRESIDIO_TYPES = {
    "CREDIT_CARD": "CARD",
    "US_SSN": "SSN",
    "PHONE_NUMBER": "PHONE",
    "EMAIL_ADDRESS": "EMAIL",
    "IBAN_CODE": "IBAN",
    "US_BANK_NUMBER": "BANK_ACCOUNT",
    "ABA_ROUTING_NUMBER": "ROUTING",
}

REGEXES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("CARD", re.compile(r"\b(?:\d[ -]?){12,18}\d\b")),
    ("SSN", re.compile(r"\b\d{3}-\d{2}-\d{4}\b")),
    ("PHONE", re.compile(r"(?:\+?1[ .-]?)?\(?\b[2-9]\d{2}\)?[ .-]?[2-9]\d{2}[ .-]?\d{4}\b")),
    ("EMAIL", re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")),
    ("IBAN", re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b")),
    ("DIGITS", re.compile(r"\b\d{3,}\b")),
)

Predicted = list[list[tuple[str, int, int]]]


@dataclass(frozen=True)
class Method:
    """One method's figures."""

    name: str
    tokens: int
    seconds: float
    scores: dict[str, Score] | None
    corpus: str

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds


def best_time(work: Callable[[], object], repeat: int) -> float:
    """Seconds of the fastest of ``repeat`` runs of ``work`` after one warm-up."""
    work()
    best = math.inf
    for _ in range(repeat):
        began = time.process_time()
        work()
        best = min(best, time.process_time() - began)
    return best


# ---------------------------------------------------------------------- text views


@dataclass(frozen=True)
class Text:
    """A transcript as the text a text-only tool sees, and where each word starts in it."""

    text: str
    starts: list[int]

    @classmethod
    def of(cls, transcript: LabelledTranscript) -> Text:
        starts = []
        position = 0
        for word in transcript.words:
            starts.append(position)
            position += len(word.text) + 1
        return cls(" ".join(word.text for word in transcript.words), starts)

    def words(self, start: int, end: int) -> tuple[int, int]:
        """The word range (end exclusive) that characters ``start:end`` touch."""
        first = bisect.bisect_right(self.starts, start) - 1
        last = bisect.bisect_left(self.starts, end)
        return max(first, 0), max(last, first + 1)


# ---------------------------------------------------------------------- methods


def redactor_predictions(corpus: Sequence[LabelledTranscript]) -> Predicted:
    results = Redactor().redact_batch([transcript.words for transcript in corpus])
    return [[(s.entity, s.start_word, s.end_word) for s in r.spans] for r in results]


def regex_predictions(texts: Sequence[Text]) -> Predicted:
    predicted: Predicted = []
    for text in texts:
        spans = []
        for entity, pattern in REGEXES:
            for match in pattern.finditer(text.text):
                spans.append((entity, *text.words(match.start(), match.end())))
        predicted.append(spans)
    return predicted


def load_presidio() -> tuple[list[Any], str] | None:
    """Presidio's pattern recognizers, ready to run offline; None when not installed."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import presidio_analyzer  # noqa: F401
            import tldextract
            from presidio_analyzer.predefined_recognizers import (
                AbaRoutingRecognizer,
                CreditCardRecognizer,
                EmailRecognizer,
                IbanRecognizer,
                PhoneRecognizer,
                UsBankRecognizer,
                UsSsnRecognizer,
            )
    except ImportError:
        return None
    # the Email recognizer's domain check would fetch the public-suffix list
    tldextract.tldextract.TLD_EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)
    recognizers = [
        CreditCardRecognizer(),
        UsSsnRecognizer(),
        PhoneRecognizer(),
        EmailRecognizer(),
        IbanRecognizer(),
        UsBankRecognizer(),
        AbaRoutingRecognizer(),
    ]
    from importlib.metadata import version

    return recognizers, version("presidio-analyzer")


def presidio_predictions(recognizers: Sequence[Any], texts: Sequence[Text]) -> Predicted:
    predicted: Predicted = []
    for text in texts:
        spans = []
        for recognizer in recognizers:
            for result in recognizer.analyze(
                text.text, entities=recognizer.supported_entities, nlp_artifacts=None
            ):
                entity = PRESIDIO_TYPES.get(result.entity_type)
                if entity is not None:
                    spans.append((entity, *text.words(result.start, result.end)))
        predicted.append(spans)
    return predicted


# ---------------------------------------------------------------------- report


def accuracy_table(methods: Sequence[Method]) -> str:
    headers = ["entity", "gold"]
    for method in methods:
        headers += [f"{method.name} R", f"{method.name} P"]
    rows = []
    scored = [m for m in methods if m.scores is not None]
    for entity in ENTITY_TYPES:
        gold = scored[0].scores[entity].gold if scored else 0  # type: ignore[index]
        row = [entity, str(gold)]
        for method in methods:
            score = (method.scores or {}).get(entity)
            if score is None:
                row += ["-", "-"]
                continue
            row += [
                f"{score.recall:.3f}" if score.gold else "-",
                f"{score.precision:.3f}" if score.predicted else "-",
            ]
        rows.append(row)
    return format_table(headers, [[*row[:-1], row[-1]] for row in rows])


def measure(
    corpus: Sequence[LabelledTranscript],
    presidio: tuple[list[Any], str] | None,
    presidio_count: int,
    repeat: int,
    label: str,
) -> list[Method]:
    """Every method's speed and accuracy on ``corpus`` (Presidio on its first share)."""
    texts = [Text.of(transcript) for transcript in corpus]
    tokens = sum(len(transcript.words) for transcript in corpus)
    docs = [transcript.words for transcript in corpus]
    redactor = Redactor()
    batch = tokenize(docs)
    methods = [
        Method(
            "dsp.redact",
            tokens,
            best_time(lambda: redactor.redact_batch(docs), repeat),
            evaluate(corpus, redactor_predictions(corpus)),
            label,
        ),
        Method(
            "kernel",
            tokens,
            best_time(lambda: redactor.registry.detect(scan(batch)), repeat),
            None,
            label,
        ),
        Method(
            "regex",
            tokens,
            best_time(lambda: regex_predictions(texts), repeat),
            evaluate(corpus, regex_predictions(texts)),
            label,
        ),
    ]
    if presidio is not None:
        share = corpus[:presidio_count]
        share_texts = texts[:presidio_count]
        recognizers = presidio[0]
        methods.append(
            Method(
                "presidio",
                sum(len(transcript.words) for transcript in share),
                best_time(
                    lambda: presidio_predictions(recognizers, share_texts), max(1, repeat - 1)
                ),
                evaluate(share, presidio_predictions(recognizers, share_texts)),
                label,
            )
        )
    return methods


def speed_rows(methods: Sequence[Method]) -> list[list[str]]:
    reference = next((m for m in methods if m.name == "presidio"), None)
    rows = []
    for method in methods:
        speedup = (
            f"{method.tokens_per_s / reference.tokens_per_s:,.0f}" if reference is not None else "-"
        )
        rows.append(
            [
                method.corpus,
                method.name,
                str(method.tokens),
                f"{method.seconds * 1e3:,.1f}",
                f"{method.tokens_per_s / 1e6:,.3f}",
                speedup,
            ]
        )
    return rows


def verdicts(methods: Sequence[Method]) -> list[str]:
    by_name = {method.name: method for method in methods}
    end_to_end, kernel = by_name["dsp.redact"], by_name["kernel"]
    corpus = end_to_end.corpus
    met = "met" if end_to_end.tokens_per_s >= TARGET_TOKENS_PER_S else "NOT met"
    lines = [
        f"{corpus}: target >= {TARGET_TOKENS_PER_S / 1e6:g} M tokens/s end to end: {met} "
        f"({end_to_end.tokens_per_s / 1e6:.2f} M; kernel {kernel.tokens_per_s / 1e6:.2f} M)"
    ]
    reference = by_name.get("presidio")
    if reference is not None:
        for method in (end_to_end, kernel):
            ratio = method.tokens_per_s / reference.tokens_per_s
            met = "met" if ratio >= TARGET_SPEEDUP else "NOT met"
            lines.append(
                f"{corpus}: target >= {TARGET_SPEEDUP:g}x Presidio's speed, {method.name}: "
                f"{met} ({ratio:,.0f}x)"
            )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--transcripts", type=int, default=20000, help="labelled corpus size")
    parser.add_argument("--calls", type=int, default=2000, help="call-length transcripts")
    parser.add_argument("--talk", type=int, default=60, help="talk sentences per call")
    parser.add_argument("--presidio-transcripts", type=int, default=1000, help="Presidio's share")
    parser.add_argument("--presidio-calls", type=int, default=60, help="Presidio's calls")
    parser.add_argument("--seed", type=int, default=2026, help="corpus seed")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs; the best is kept")
    parser.add_argument("--cpu", type=int, default=None, help="CPU to pin to (default: last)")
    parser.add_argument("--quick", action="store_true", help="small corpora, two runs")
    args = parser.parse_args(argv)
    if args.quick:
        args.transcripts, args.presidio_transcripts, args.repeat = 3000, 300, 2
        args.calls, args.presidio_calls = 300, 20
    if min(args.transcripts, args.calls) < 10 or args.presidio_transcripts < 1 or args.repeat < 1:
        parser.error("--transcripts and --calls >= 10, --presidio-* >= 1, --repeat >= 1")

    cpu = pin_to_one_cpu(args.cpu)
    dense = generate(args.transcripts, seed=args.seed)
    calls = generate(args.calls, seed=args.seed + 1, talk=args.talk)
    gc.collect()
    gc.freeze()
    presidio = load_presidio()

    print_title("Transcript redaction: tokens/s on one core, precision and recall per type")
    for line in machine_lines():
        print(line)
    dense_tokens = sum(len(transcript.words) for transcript in dense)
    call_tokens = sum(len(transcript.words) for transcript in calls)
    print(
        f"pinned to CPU {cpu}; NumPy {np.__version__}; labelled corpus: {len(dense)} "
        f"transcripts, {dense_tokens} tokens (seed {args.seed}); calls: {len(calls)} "
        f"transcripts, {call_tokens} tokens ({args.talk} talk sentences each)"
    )
    if presidio is None:
        print("presidio-analyzer is not installed (pip install '.[bench]'): no Presidio figures")
    else:
        print(f"presidio-analyzer {presidio[1]}")
    print(__doc__.split("Method\n------\n", 1)[1].rstrip())
    print()

    labelled = measure(dense, presidio, args.presidio_transcripts, args.repeat, "labelled")
    call_length = measure(calls, presidio, args.presidio_calls, args.repeat, "calls")
    headers = ["corpus", "method", "tokens", "ms", "Mtokens/s", "x presidio"]
    print(format_table(headers, speed_rows(labelled) + speed_rows(call_length)))
    print()
    print("Labelled corpus; R: recall, P: precision (see the method); Presidio's over its share")
    print(accuracy_table([m for m in labelled if m.scores is not None]))
    print()
    print("Calls (the same kinds of entities inside ordinary talk)")
    print(accuracy_table([m for m in call_length if m.scores is not None]))
    print()
    for line in verdicts(labelled) + verdicts(call_length):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
