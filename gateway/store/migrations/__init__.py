"""Alembic migrations of the call-record store (``env.py``, ``versions/``).

A package so that ``env.py`` ships with the distribution; Alembic loads the
files itself, nothing imports this package.
"""
