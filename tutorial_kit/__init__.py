"""Plumbing for the async SQLAlchemy tutorial: where the database is, SQL capture,
statement counting, time and memory measurement, plotting, and the domain models.

``%load_ext tutorial_kit`` in a notebook explains the async-ORM errors of later cells in a
few lines (tutorial_kit/explain.py).

The SQLAlchemy API the reader is learning stays in the notebooks.
"""

from tutorial_kit.database import DatabaseConfigError, database_url, find_database
from tutorial_kit.explain import load_ipython_extension, unload_ipython_extension

__all__ = ["DatabaseConfigError", "database_url", "find_database", "load_ipython_extension",
           "unload_ipython_extension"]
