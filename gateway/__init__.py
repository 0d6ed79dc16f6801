"""callgate: a call-recording privacy gateway for VoIP."""

from gateway import compiled as _compiled

_compiled.choose()  # the call path compiled, or from its sources (gateway.compiled)
