"""Deterministic bookshop data of any size.

``make_dataset`` returns plain row dicts (same seed, same rows), so a lesson
can insert them through whichever path it is teaching. ``load_dataset`` is
what the later lessons use to set up their state: PostgreSQL ``COPY``
through asyncpg, which sends no SQL statement per row (lesson 03 times it
against the other bulk paths and prints whether their ranges overlap).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from tutorial_kit.models import Author, Book

_FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Margaret",
          "Dennis", "Radia", "Tony", "Katherine", "John", "Hedy", "Niklaus", "Sophie", "Guido"]
_LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson",
         "Hamilton", "Ritchie", "Perlman", "Hoare", "Johnson", "Backus", "Lamarr", "Wirth",
         "Wilson", "van Rossum"]
_COUNTRIES = ["GB", "US", "NL", "DE", "FR", "CH", "CA", "IN", "JP", "BR"]
_WORDS = ["async", "session", "engine", "cursor", "greenlet", "loop", "query", "index", "schema",
          "commit", "flush", "stream", "pool", "lock", "row", "column", "join", "select"]
_NOUNS = ["Guide", "Handbook", "Notes", "Patterns", "Primer", "Recipes", "Field Manual", "Diaries"]


@dataclass(frozen=True)
class Dataset:
    """Rows for the three tables, with explicit primary keys."""

    authors: list[dict[str, Any]]
    books: list[dict[str, Any]]
    reviews: list[dict[str, Any]]

    @property
    def total_rows(self) -> int:
        return len(self.authors) + len(self.books) + len(self.reviews)

    def __repr__(self) -> str:
        return (f"Dataset(authors={len(self.authors):,}, books={len(self.books):,}, "
                f"reviews={len(self.reviews):,})")


def make_dataset(n_authors: int, books_per_author: int = 3, reviews_per_book: int = 2,
                 *, seed: int = 42) -> Dataset:
    """``n_authors × books_per_author`` books and ``× reviews_per_book`` reviews, seeded."""
    rng = random.Random(seed)
    authors, books, reviews = [], [], []
    for a in range(1, n_authors + 1):
        authors.append({
            "id": a,
            "name": f"{rng.choice(_FIRST)} {rng.choice(_LAST)}",
            "country": rng.choice(_COUNTRIES),
        })
        for _ in range(books_per_author):
            b = len(books) + 1
            books.append({
                "id": b,
                "author_id": a,
                "title": f"{rng.choice(_WORDS).title()} {rng.choice(_NOUNS)} vol. {b}",
                "year": rng.randint(1990, 2026),
                "price_cents": rng.randrange(999, 7999, 100),
            })
            for _ in range(reviews_per_book):
                reviews.append({
                    "id": len(reviews) + 1,
                    "book_id": b,
                    "rating": rng.randint(1, 5),
                    "body": " ".join(rng.choices(_WORDS, k=8)),
                })
    return Dataset(authors, books, reviews)


def make_objects(data: Dataset) -> list[Author]:
    """The same data as ORM objects, books attached to their authors (no ids set).

    Reviews are left out: ``Book.reviews`` is write-only, so they are added
    separately with ``book.reviews.add_all(...)`` where a lesson needs them.
    """
    by_id: dict[int, Author] = {}
    for row in data.authors:
        by_id[row["id"]] = Author(name=row["name"], country=row["country"], books=[])
    for row in data.books:
        by_id[row["author_id"]].books.append(
            Book(title=row["title"], year=row["year"], price_cents=row["price_cents"])
        )
    return list(by_id.values())


async def load_dataset(conn: AsyncConnection, data: Dataset) -> None:
    """Bulk-load ``data`` with PostgreSQL COPY and move the id sequences past it.

    The tables must exist (``Base.metadata.create_all``) and be empty. The rows are
    copied in ``conn``'s transaction: if the block around it fails, no row stays.
    The sequences are not: ``setval`` is not undone by a rollback, so after one they
    stay moved past ``data``'s ids (the next ids skip, nothing collides).

    The COPYs go to the asyncpg connection directly, past SQLAlchemy's exception
    wrapping: a COPY that fails raises asyncpg's own exception (for example
    ``asyncpg.UniqueViolationError``), not ``sqlalchemy.exc.IntegrityError``.
    Lesson 03 shows all three.
    """
    tables = [(table, rows) for table, rows in (("author", data.authors), ("book", data.books),
                                                ("review", data.reviews)) if rows]
    if not tables:
        return
    # The first statement goes through SQLAlchemy, not the driver: the asyncpg adapter
    # sends BEGIN only before the first statement it executes
    # (AsyncAdapt_asyncpg_cursor._prepare_and_execute), not at engine.begin(). A COPY
    # on the driver connection before that would run outside the transaction and
    # commit at once (lesson 03 shows it). This statement moves the id sequences.
    await conn.execute(select(*[
        func.setval(func.pg_get_serial_sequence(table, "id"), len(rows))
        for table, rows in tables
    ]))
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection  # the asyncpg.Connection under SQLAlchemy's adapter
    assert driver is not None
    for table, rows in tables:
        columns = list(rows[0])
        await driver.copy_records_to_table(
            table, records=[tuple(r[c] for c in columns) for r in rows], columns=columns
        )
