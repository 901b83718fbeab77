"""The contributors' harness: run, check, build and measure the notebooks.

Each module with a ``main`` runs as ``python -m tutorial_harness.<module>``; the
tests import the rest. The learner never needs it (``tutorial_kit`` is theirs).
"""

from pathlib import Path

#: The repository's root: the harness is installed editable (``pip install -e .``) from it.
REPO = Path(__file__).resolve().parent.parent
