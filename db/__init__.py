"""Database layer: models, engine, configuration, embedded PostgreSQL, notifications."""
