"""Capture sinks and what analyses captured audio.

- :mod:`gateway.analysis.timeline`: a party's RTP packets placed on the
  recording's sample clock by their timestamps (RFC 3550 5.1, A.1, A.8).
- :mod:`gateway.analysis.recorder`: the per-call stereo WAV file writer
  (caller left, callee right), written behind a short latency window and
  renamed into place when the call's recording is complete.
"""
