"""The lesson registry: book/_toc.yml lists the lessons, in reading order.

The book needs that list anyway (it is Jupyter Book's table of contents), so it is
the one place a lesson is registered. Everything else reads it from here: the
runner's ``notebook_paths()`` (and so every test, build and measurement that goes
over the notebooks) and the tests that keep notebooks/, 00's outline, the README's
outline and the instructor guide's table in step with it.

Each chapter is a notebook and its short title, the one the book's sidebar and the
three lesson tables show (the notebook's own first line may say more)::

    - file: notebooks/04_eager_loading
      title: 04 · Eager loading compared

A lesson's number is its file name's prefix; the title starts with it. The lessons are
the part captioned ``Lessons``; a later part (``Reference``: the error index) holds pages
that are not lessons.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from tutorial_harness import REPO

TOC = REPO / "book" / "_toc.yml"
LESSONS_CAPTION = "Lessons"   # the part of the table of contents that is the registry
# A chapter of the table of contents, as Jupyter Book writes it: no suffix.
CHAPTER = re.compile(r"^notebooks/(?P<number>\d\d)_[a-z0-9_]+$")


@dataclass(frozen=True)
class Lesson:
    number: str  # "04": the file name's prefix, which the titles and the schema repeat
    path: Path   # notebooks/04_eager_loading.ipynb
    title: str   # "04 · Eager loading compared"


def lessons() -> list[Lesson]:
    """Every chapter of book/_toc.yml's Lessons part, in order; each must be a lesson."""
    toc = yaml.safe_load(TOC.read_text())
    found = []
    for part in toc["parts"]:
        if part.get("caption") != LESSONS_CAPTION:
            continue
        for chapter in part["chapters"]:
            match = CHAPTER.match(chapter["file"])
            title = chapter.get("title", "")
            if match is None or not title.startswith(f"{match['number']} · "):
                raise ValueError(
                    f"{TOC.relative_to(REPO)}: {chapter} is not a lesson: write "
                    "'file: notebooks/NN_short_name' (no .ipynb) and 'title: NN · Short title'")
            found.append(Lesson(match["number"], REPO / f"{chapter['file']}.ipynb", title))
    return found
