"""Call records: SQLAlchemy models, engine, migrations, batched writer."""
