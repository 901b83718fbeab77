"""Per-learner schema names: who the learner is, and how any name becomes an identifier."""

from __future__ import annotations

import getpass
import re

import pytest

from tutorial_kit.classroom import (
    ClassSchema,
    ServerLimits,
    format_budget,
    format_list,
    server_full_message,
)
from tutorial_kit.schema import (
    MARKER,
    belongs_to,
    is_marked,
    learner_name,
    learner_schema,
    learner_slug,
    marker_comment,
    schema_owner,
)

VALID = re.compile(r"^tutorial_[0-9]{2}_[a-z0-9_]+$")


def test_jupyterhub_user_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BINDER_LAUNCH_HOST", "BINDER_REPO_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JUPYTERHUB_USER", "alice")
    assert learner_name() == "alice"
    assert learner_schema("04") == "tutorial_04_alice"


def test_os_user_when_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JUPYTERHUB_USER", raising=False)
    monkeypatch.setenv("USER", "sam")
    monkeypatch.setenv("LOGNAME", "sam")
    assert learner_name() == getpass.getuser() == "sam"
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
    assert learner_name() == "sam"


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


def test_marker_records_the_learner_safely() -> None:
    assert marker_comment(None) == MARKER
    comment = marker_comment("O'Brien\\x")
    assert "'" not in comment and "\\" not in comment
    assert is_marked(comment) and is_marked(MARKER)
    assert not is_marked("my schema") and not is_marked(None) and not is_marked("")
    assert not is_marked(MARKER + "x"), "only the exact marker, or the marker + learner tag"
    assert schema_owner("tutorial_04_alice", marker_comment("alice")) == "alice"
    assert schema_owner("tutorial_04_alice", MARKER) == "alice", "older comment: from the name"
    assert schema_owner("tutorial_04", MARKER) is None, "before per-learner names"


def test_belongs_to_matches_name_or_slug() -> None:
    jane = learner_schema("04", "jane.doe@uni.edu")
    assert belongs_to(jane, marker_comment("jane.doe@uni.edu"), "jane.doe@uni.edu")
    assert belongs_to(jane, MARKER, "jane.doe@uni.edu")
    assert not belongs_to(jane, marker_comment("jane.doe@uni.edu"), "jane")
    assert belongs_to("tutorial_04_alice", MARKER, "alice")
    assert not belongs_to("tutorial_04_alice", MARKER, "bob")
    assert not belongs_to("tutorial_04", MARKER, "alice")


def test_class_list_groups_by_learner() -> None:
    report = format_list([
        ClassSchema("tutorial_04", MARKER, 8192),
        ClassSchema("tutorial_04_alice", marker_comment("alice"), 3 * 1024 * 1024),
        ClassSchema("tutorial_05_alice", marker_comment("alice"), 1024),
        ClassSchema("tutorial_04_bob", marker_comment("bob"), 2048),
    ])
    lines = report.splitlines()
    assert lines[1].startswith("alice") and "3.0 MB" in lines[1] and "(2 schemas)" in lines[1]
    assert "2 learner(s), 4 schema(s)" in lines[-1]
    assert "older tutorial version" in report


def test_budget_names_the_numbers() -> None:
    limits = ServerLimits(max_connections=100, superuser_reserved=3, reserved=0, in_use=7,
                          is_superuser=False, version="18.6")
    report = format_budget(limits, learners=30)
    assert "30 × 15 = 450" in report and "90 free for learners" in report
    assert "30 × 22 = 660" in report and "NOT" in report
    assert "max_connections to about 850" in report and "PgBouncer" in report
    assert "OK:" in format_budget(limits, learners=4)
    assert "Fits for most lessons" in format_budget(limits, learners=12)


def test_server_full_message_is_one_paragraph() -> None:
    for said in ("sorry, too many clients already",
                 "remaining connection slots are reserved for roles with the SUPERUSER attribute"):
        text = server_full_message(said)
        assert text is not None and "\n" not in text
        assert "max_connections" in text and "class budget" in text
    assert server_full_message("password authentication failed") is None
