"""Per-learner schema names: who the learner is, and how any name becomes an identifier."""

from __future__ import annotations

import getpass
import re
from collections.abc import Iterator
from dataclasses import replace

import pytest

from tutorial_kit import schema
from tutorial_kit.classroom import (
    ServerLimits,
    format_budget,
    format_list,
    lockstep_need,
    needed_max_connections,
)
from tutorial_kit.connection_slots import capacity
from tutorial_kit.schema import (
    MARKER,
    Learner,
    TutorialSchema,
    current_learner,
    learner_schema,
    learner_slug,
    marker_comment,
)

VALID = re.compile(r"^tutorial_[0-9]{2}_[a-z0-9_]+$")


@pytest.fixture(autouse=True)
def fresh_learner() -> Iterator[None]:
    """Each test resolves the learner from its own environment (a kernel does so once)."""
    current_learner.cache_clear()
    yield
    current_learner.cache_clear()


def test_jupyterhub_user_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in schema.BINDER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JUPYTERHUB_USER", "alice")
    assert Learner.from_environment() == Learner("alice")
    assert learner_schema("04") == "tutorial_04_alice"


def test_os_user_when_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JUPYTERHUB_USER", raising=False)
    monkeypatch.setenv("USER", "sam")
    monkeypatch.setenv("LOGNAME", "sam")
    assert Learner.from_environment().name == getpass.getuser() == "sam"
    assert learner_schema("04") == "tutorial_04_sam", "a lone learner sees a short, plain name"


def test_binder_uses_the_os_user(monkeypatch: pytest.MonkeyPatch) -> None:
    """Binder's hub user is the repo's name plus a random suffix; one learner is there."""
    monkeypatch.setenv("JUPYTERHUB_USER", "async-orm-tutor-c-orm-tutorial-x7k2m9qa")
    monkeypatch.setenv("BINDER_LAUNCH_HOST", "https://mybinder.org/")
    monkeypatch.setenv("LOGNAME", "jovyan")
    assert learner_schema("04") == "tutorial_04_jovyan"


def test_blank_hub_user_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUPYTERHUB_USER", "  ")
    monkeypatch.setenv("LOGNAME", "sam")
    assert Learner.from_environment().name == "sam"


def test_the_environment_is_read_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUPYTERHUB_USER", "alice")
    for name in schema.BINDER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert learner_schema("04") == "tutorial_04_alice"
    monkeypatch.setenv("JUPYTERHUB_USER", "bob")
    assert learner_schema("05") == "tutorial_05_alice"


@pytest.mark.parametrize("name", [
    "jane.doe@uni.edu", "Jane.Doe@uni.edu", "José", "李雷", "Ωmega-3", "x" * 70, "a-b",
    "user name", "O'Brien", "back\\slash", "bob_1a2b3c", "UPPER", "_lead", "1234",
])
def test_any_name_gives_a_valid_deterministic_schema(name: str) -> None:
    schema = learner_schema("04", name)
    assert VALID.match(schema), schema
    assert len(schema.encode()) <= 63, "PostgreSQL truncates identifiers at 63 bytes"
    assert schema == learner_schema("04", name), "the same name gives the same schema"


def test_changed_names_carry_a_hash() -> None:
    assert learner_slug("alice") == "alice"
    assert learner_slug("jane_doe") == "jane_doe"
    assert re.fullmatch(r"jane_doe_uni_edu_[0-9a-f]{6}", learner_slug("jane.doe@uni.edu"))
    assert re.fullmatch(r"jose_[0-9a-f]{6}", learner_slug("José"))
    assert re.fullmatch(r"user_[0-9a-f]{6}", learner_slug("李雷"))
    long = learner_slug("x" * 70)
    assert len(long) <= 40 and re.fullmatch(r"x+_[0-9a-f]{6}", long)


@pytest.mark.parametrize(("a", "b"), [
    ("Jane.Doe", "jane_doe"), ("jane.doe", "jane-doe"), ("alice", "Alice"), ("李雷", "王芳"),
    ("x" * 70, "x" * 69 + "y"), ("bob", "bob_" + learner_slug("bob!")[-6:]),
    ("jose", "José"),
])
def test_different_names_never_share_a_schema(a: str, b: str) -> None:
    assert learner_schema("04", a) != learner_schema("04", b)


def test_lesson_must_be_a_number_part() -> None:
    with pytest.raises(ValueError):
        learner_schema("04; DROP SCHEMA public", "alice")


def listed(name: str, learner: str | None) -> TutorialSchema:
    """The schema as the listing reads it back from the server."""
    return TutorialSchema.read(name, marker_comment(Learner(learner) if learner else None))


def test_marker_records_the_learner_safely() -> None:
    assert marker_comment(None) == MARKER
    comment = marker_comment(Learner("O'Brien\\x"))
    assert "'" not in comment and "\\" not in comment
    assert listed("tutorial_04_alice", "alice").learner == "alice"
    assert listed("tutorial_04_alice", None).learner == "alice", "older comment: from the name"
    assert listed("tutorial_04", None).learner is None, "before per-learner names"


def test_belongs_to_matches_name_or_slug() -> None:
    jane = Learner("jane.doe@uni.edu")
    name = jane.schema("04")
    assert listed(name, jane.name).belongs_to(jane)
    assert listed(name, None).belongs_to(jane)
    assert not listed(name, jane.name).belongs_to(Learner("jane"))
    assert listed("tutorial_04_alice", None).belongs_to(Learner("alice"))
    assert not listed("tutorial_04_alice", None).belongs_to(Learner("bob"))
    assert not listed("tutorial_04", None).belongs_to(Learner("alice"))


def test_class_list_groups_by_learner() -> None:
    report = format_list([
        TutorialSchema("tutorial_04", None, 8192),
        TutorialSchema("tutorial_04_alice", "alice", 3 * 1024 * 1024),
        TutorialSchema("tutorial_05_alice", "alice", 1024),
        TutorialSchema("tutorial_04_bob", "bob", 2048),
    ])
    lines = report.splitlines()
    assert lines[1].startswith("alice") and "3.0 MB" in lines[1] and "(2 schemas)" in lines[1]
    assert "2 learner(s), 4 schema(s)" in lines[-1]
    assert "older tutorial version" in report


def test_budget_names_the_numbers() -> None:
    """Lockstep need = learners × PER_LEARNER + the class's slots, against what is free."""
    limits = ServerLimits(max_connections=100, superuser_reserved=3, reserved=0, in_use=7,
                          is_superuser=False, version="18.6")
    report = format_budget(limits, learners=30)
    assert "90 free for learners" in report and "24 shared connection slots" in report
    assert "30 × 2 + 24 slots = 84" in report and "Fits: 84 ≤ 90" in report
    assert "lesson 13: " in report  # the measured peaks of the many-connection lessons
    tight = format_budget(limits, learners=40)
    assert "40 × 2 + 24 slots = 104" in tight and "Does NOT fit: 104 > 90" in tight
    assert "at most 33 learners in step" in tight
    # 40 × 2 + 7 in use = 87 ≤ ordinary − ordinary // 4 from ordinary = 115 (115 − 28), + 3.
    assert "Raise max_connections to at least 118" in tight


def test_budget_suggestion_fits() -> None:
    """The suggested max_connections is the smallest at which the class fits in step."""
    for learners in (10, 36, 40, 80, 200):
        limits = ServerLimits(100, 3, 2, 5, False, "18.6")
        suggested = needed_max_connections(limits, learners)
        at = replace(limits, max_connections=suggested)
        below = replace(limits, max_connections=suggested - 1)
        assert lockstep_need(learners, capacity(at.ordinary)) <= at.for_learners
        assert lockstep_need(learners, capacity(below.ordinary)) > below.for_learners or \
            suggested == limits.max_connections
