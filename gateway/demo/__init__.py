"""Built-in demo phones: SIP user agents with scripted RTP, for ``callgate demo`` and tests.

:class:`Phone` places and answers calls over the gateway's own SIP stack
(RFC 3261), negotiates G.711 and telephone-events (RFC 3264, RFC 3551,
RFC 4733) and plays an :class:`AudioScript` of tones, digits and a hang-up.
"""

from gateway.demo.phone import AnswerMode, CallNotAnswered, Phone, PhoneCall
from gateway.demo.script import AudioScript, Digit, Hangup, Tone

__all__ = [
    "AnswerMode",
    "AudioScript",
    "CallNotAnswered",
    "Digit",
    "Hangup",
    "Phone",
    "PhoneCall",
    "Tone",
]
