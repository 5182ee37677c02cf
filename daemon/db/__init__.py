"""Database: models, engine, and the short transactions of the engine."""
