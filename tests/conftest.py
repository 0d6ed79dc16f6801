"""Shared fixtures: databases (SQLite and PostgreSQL) and real SIP peers."""

pytest_plugins = ["tests.support.databases", "tests.support.peers"]
