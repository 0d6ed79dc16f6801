"""Media anchoring: RTP port pool, symmetric relay, per-leg statistics.

- :mod:`gateway.media.ports`: even/odd RTP/RTCP port pairs (RFC 3550 11).
- :mod:`gateway.media.rtp`: RTP packets and media-port demultiplexing (RFC 3550, 5761, 7983).
- :mod:`gateway.media.stats`: per-side counters, loss and jitter (RFC 3550 A.1, A.3, A.8).
- :mod:`gateway.media.forward`: the per-packet path (latching, forwarding).
- :mod:`gateway.media.session`: a call's streams and what each party declared.
- :mod:`gateway.media.relay`: the relay that binds sessions, and the idle watch.
"""
