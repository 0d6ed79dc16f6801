"""Media anchoring: RTP port pool, symmetric relay, per-leg statistics."""
