"""The contributors' harness: run, check, build and measure the notebooks.

Each module with a ``main`` runs as ``python -m tutorial_harness.<module>``; the
tests import the rest. The learner never needs it (``tutorial_kit`` is theirs).
"""
