"""The HTTP API: call metadata, consent trails, stats, policy, data-subject rights, health."""
