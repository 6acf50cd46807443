"""Source and sink connectors (SQL through SQLAlchemy, Redis)."""
