"""Plumbing for the async SQLAlchemy tutorial: where the database is, SQL capture,
statement counting, time and memory measurement, plotting, and the domain models.

The SQLAlchemy API the reader is learning stays in the notebooks.
"""

from tutorial_kit.database import DatabaseConfigError, database_url, find_database

__all__ = ["DatabaseConfigError", "database_url", "find_database"]
