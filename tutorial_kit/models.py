"""The bookshop domain used from lesson 02 on: authors → books → reviews.

Defined once, here; lesson 02 walks through this source. Each choice below
exists to make one lesson's point:

- ``created_at`` uses ``server_default=func.now()``: the database fills it in,
  and SQLAlchemy 2.x fetches it back through ``RETURNING`` on INSERT.
- ``Book.updated_at`` has ``onupdate=func.now()`` *and* the mapper sets
  ``eager_defaults=True``, so the new value is fetched by the UPDATE itself.
- ``Review.edited_at`` has ``onupdate`` but leaves ``eager_defaults`` at its
  default (``"auto"``), which does not fetch UPDATE-time values: reading it
  after an UPDATE flush needs IO, which is one of the async traps.
- ``Book.reviews`` is a ``WriteOnlyMapped`` collection: a popular book can
  have thousands of reviews, so it is never loaded whole; read it with
  ``book.reviews.select()``.
- Every timestamp is ``DateTime(timezone=True)`` (``timestamptz``): the
  server's ``now()`` is an instant, and asyncpg refuses to mix aware and
  naive datetimes.
"""

from __future__ import annotations

import datetime

from sqlalchemy import DateTime, ForeignKey, SmallInteger, String, Text, func
from sqlalchemy.ext.asyncio import AsyncAttrs
from sqlalchemy.orm import DeclarativeBase, Mapped, WriteOnlyMapped, mapped_column, relationship


class Base(AsyncAttrs, DeclarativeBase):
    """Declarative base; ``AsyncAttrs`` adds ``obj.awaitable_attrs.<name>``."""


class Author(Base):
    __tablename__ = "author"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    country: Mapped[str] = mapped_column(String(2))
    created_at: Mapped[datetime.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )

    books: Mapped[list[Book]] = relationship(back_populates="author", order_by="Book.id")

    def __repr__(self) -> str:
        return f"Author(id={self.id!r}, name={self.name!r})"


class Book(Base):
    __tablename__ = "book"

    id: Mapped[int] = mapped_column(primary_key=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("author.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    year: Mapped[int]
    price_cents: Mapped[int]
    created_at: Mapped[datetime.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    updated_at: Mapped[datetime.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )

    author: Mapped[Author] = relationship(back_populates="books")
    reviews: WriteOnlyMapped[Review] = relationship(
        back_populates="book", order_by="Review.id", passive_deletes=True
    )

    # Fetch server-generated values on UPDATE as well as INSERT (see module docstring).
    __mapper_args__ = {"eager_defaults": True}

    def __repr__(self) -> str:
        return f"Book(id={self.id!r}, title={self.title!r})"


class Review(Base):
    __tablename__ = "review"

    id: Mapped[int] = mapped_column(primary_key=True)
    book_id: Mapped[int] = mapped_column(ForeignKey("book.id", ondelete="CASCADE"), index=True)
    rating: Mapped[int] = mapped_column(SmallInteger)
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    edited_at: Mapped[datetime.datetime | None] = mapped_column(
        DateTime(timezone=True), onupdate=func.now()
    )

    book: Mapped[Book] = relationship(back_populates="reviews")

    def __repr__(self) -> str:
        return f"Review(id={self.id!r}, book_id={self.book_id!r}, rating={self.rating!r})"
