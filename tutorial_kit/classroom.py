"""Instructor tools for a class on one shared PostgreSQL: ``python -m tutorial_kit class …``.

list                 every learner's tutorial schemas with their sizes, grouped by learner
drop --learner NAME  drop one learner's tutorial schemas (needs --yes)
drop --all           drop every tutorial schema in the database (needs --yes)
budget --learners N  the connections N learners need against the server's max_connections

Only schemas carrying the tutorial's marker comment are ever listed or
dropped (tutorial_kit.schema). The database is the one the notebooks use
(DATABASE_URL, else compose, else the embedded server).
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import text

from tutorial_kit.connection_slots import PER_LEARNER, capacity
from tutorial_kit.database import find_database, one_off_connection, run_sync
from tutorial_kit.schema import Learner, TutorialSchema, drop_schema, tutorial_schemas

#: Each lesson's peak of client connections, one learner alone, many-connection cells
#: included (their class-wide slots: tutorial_kit/connection_slots.py). Measured by
#: tests/test_notebooks.py on every run, which fails when a lesson goes above its figure
#: or, outside its slots, above connection_slots.PER_LEARNER.
LESSON_PEAKS = {"00": 1, "01": 2, "02": 1, "03": 2, "04": 1, "05": 2, "06": 2, "07": 1,
                "08": 6, "09": 2, "10": 2, "11": 6, "12": 4, "13": 12, "14": 5, "15": 2,
                "16": 2, "17": 5, "18": 2}
#: Shown for schemas from before per-learner names (``tutorial_04``).
NO_OWNER = "(no learner: older tutorial version)"


def owner(schema: TutorialSchema) -> str:
    """The learner a schema is listed under."""
    return schema.learner or NO_OWNER


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("bytes", "kB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def format_list(schemas: Sequence[TutorialSchema]) -> str:
    """The ``class list`` report: one block per learner, largest learner first."""
    if not schemas:
        return "No tutorial schemas in this database."
    by_owner: dict[str, list[TutorialSchema]] = defaultdict(list)
    for s in schemas:
        by_owner[owner(s)].append(s)
    totals = {owner: sum(s.size_bytes for s in group) for owner, group in by_owner.items()}
    width = max(max(len(s.name) for s in schemas) + 2, *(len(o) - 2 for o in by_owner))
    lines = [f"{'Learner / schema':<{width + 2}} {'Size':>10}"]
    for who in sorted(by_owner, key=lambda o: (-totals[o], o)):
        group = by_owner[who]
        lines.append(f"{who:<{width + 2}} {human_size(totals[who]):>10}  "
                     f"({len(group)} schema{'s' if len(group) != 1 else ''})")
        lines += [f"  {s.name:<{width}} {human_size(s.size_bytes):>10}" for s in group]
    learners = len(by_owner) - (NO_OWNER in by_owner)
    lines.append(f"{learners} learner(s), {len(schemas)} schema(s), "
                 f"{human_size(sum(totals.values()))} in all")
    return "\n".join(lines)


async def drop_each(url: str, names: Sequence[str]) -> tuple[list[str], list[str]]:
    """Drop each schema in its own transaction; one in use gets 5 s, then is skipped.

    Returns (dropped, skipped with the reason).
    """
    dropped, skipped = [], []
    async with one_off_connection(url) as conn:
        for name in names:
            try:
                async with conn.begin():
                    # A learner's kernel mid-query holds locks: wait briefly, never block the class.
                    await conn.execute(text("SET LOCAL lock_timeout = '5s'"))
                    if await drop_schema(conn, name):
                        dropped.append(name)
            except Exception as err:  # reported; the next schema goes on
                first = str(getattr(err, "orig", err)).splitlines()[0][:120]
                skipped.append(f"{name}: {first}")
    return dropped, skipped


async def list_schemas(url: str) -> list[TutorialSchema]:
    """``tutorial_schemas`` on a connection of its own."""
    async with one_off_connection(url) as conn:
        return await tutorial_schemas(conn)


async def reset_mine(url: str, learner: Learner) -> tuple[list[str], int]:
    """``make reset-db``: drop ``learner``'s schemas and ones from before per-learner names.

    Other learners' schemas on a shared server are kept; returns (dropped, kept count).
    """
    schemas = await list_schemas(url)
    mine = [s.name for s in schemas if s.learner is None or s.belongs_to(learner)]
    dropped, skipped = await drop_each(url, mine)
    for line in skipped:
        print(f"skipped {line}", file=sys.stderr)
    return dropped, len(schemas) - len(dropped)


# --------------------------------------------------------------------------- budget


@dataclass(frozen=True)
class ServerLimits:
    max_connections: int
    superuser_reserved: int
    reserved: int  # PostgreSQL 16+: reserved_connections, for pg_use_reserved_connections
    in_use: int  # client backends connected right now (this check's own excluded)
    is_superuser: bool
    version: str

    @property
    def ordinary(self) -> int:
        """Connections an ordinary role may open: the limit less the reserved ones."""
        return self.max_connections - self.superuser_reserved - self.reserved

    @property
    def for_learners(self) -> int:
        """Slots an ordinary role can still take: the limit less the reserved and the used."""
        return self.ordinary - self.in_use


async def server_limits(url: str) -> ServerLimits:
    async with one_off_connection(url) as conn:
        row = (await conn.execute(text(
            "SELECT current_setting('max_connections')::int, "
            "current_setting('superuser_reserved_connections')::int, "
            "coalesce(current_setting('reserved_connections', true), '0')::int, "
            "(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
            " AND pid <> pg_backend_pid())::int, "
            "(SELECT rolsuper FROM pg_roles WHERE rolname = current_user), "
            "current_setting('server_version')"
        ))).one()
    return ServerLimits(*row)


def lockstep_need(learners: int, slots: int) -> int:
    """The most client connections ``learners`` can hold at once, all on the same cell.

    Outside a many-connection cell each learner holds at most ``PER_LEARNER``; such a
    cell holds slots for everything beyond that, and all the class's cells together
    hold at most ``slots``.
    """
    return learners * PER_LEARNER + slots


def needed_max_connections(limits: ServerLimits, learners: int) -> int:
    """The smallest ``max_connections`` at which ``learners`` fit in step (the slots grow too)."""
    ordinary = limits.ordinary
    while ordinary - capacity(ordinary) - limits.in_use < learners * PER_LEARNER:
        ordinary += 1
    return ordinary + limits.superuser_reserved + limits.reserved


def max_learners(limits: ServerLimits) -> int:
    """The largest class whose lockstep need fits in what the server has free."""
    return max(0, (limits.for_learners - capacity(limits.ordinary)) // PER_LEARNER)


def format_budget(limits: ServerLimits, learners: int) -> str:
    """The ``class budget`` report: the measured need, the server's room, and what to do."""
    slots = capacity(limits.ordinary)
    need, free = lockstep_need(learners, slots), limits.for_learners
    reserved = f"{limits.superuser_reserved} reserved for superusers"
    if limits.reserved:
        reserved += f", {limits.reserved} for pg_use_reserved_connections"
    heavy = {n: p for n, p in sorted(LESSON_PEAKS.items()) if p > PER_LEARNER}
    lines = [
        f"Server: PostgreSQL {limits.version}: max_connections = {limits.max_connections} "
        f"({reserved}), {limits.in_use} in use now -> {free} free for learners.",
        f"Measured, one learner alone (tests/test_notebooks.py): at most {PER_LEARNER} "
        "connections per learner outside the many-connection cells. Those cells (peaks "
        f"alone: {', '.join(f'lesson {n}: {p}' for n, p in heavy.items())}) take the class's "
        f"{slots} shared connection slots (a quarter of the {limits.ordinary} ordinary "
        "connections) for everything beyond that, and wait while other learners hold them.",
        f"The whole class in step, on the same cell: {learners} × {PER_LEARNER} + {slots} "
        f"slots = {need}.",
        "",
    ]
    if need <= free:
        lines.append(f"Fits: {need} ≤ {free}, in step at every lesson. A many-connection cell "
                     "waits its turn for slots while other learners' cells hold them, and "
                     "says so (waits measured with 30 learners: docs/benchmark.md).")
        return "\n".join(lines)
    most = max_learners(limits)
    raise_to = needed_max_connections(limits, learners)
    lines += [
        f"Does NOT fit: {need} > {free}. This server takes at most {most} learners in step; "
        "beyond that the server refuses new connections (\"too many clients already\").",
        "",
        "What to change, in order:",
        f"  1. Raise max_connections to at least {raise_to} (a restart; on a managed server, "
        "its parameter settings or a larger instance). An idle connection costs a backend "
        "process of a few MB.",
        f"  2. Or split the class: at most {most} learners per server (or per PostgreSQL "
        "instance; the limit is the server's, not the database's).",
        "  3. Ask learners to shut down kernels they are done with (Kernel → Shut Down "
        "Kernel): each notebook's engine keeps its pooled connections until "
        "engine.dispose(), the last cell.",
    ]
    if limits.in_use:
        lines.append(f"  ({limits.in_use} connections are in use right now; they count "
                     "against the class.)")
    return "\n".join(lines)


# --------------------------------------------------------------------------- command line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tutorial_kit class", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("list", help="learners' schemas with sizes")
    drop = sub.add_parser("drop", help="drop one learner's schemas, or all (needs --yes)")
    who = drop.add_mutually_exclusive_group(required=True)
    who.add_argument("--learner", metavar="NAME",
                     help="a learner's JupyterHub/OS user name (or the name part of a schema)")
    who.add_argument("--all", action="store_true", help="every tutorial schema")
    drop.add_argument("--yes", action="store_true", help="really drop them")
    budget = sub.add_parser("budget", help="connections needed vs max_connections")
    budget.add_argument("--learners", type=int, required=True, metavar="N")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    db = find_database()
    print(db.describe())
    if args.action == "list":
        print(format_list(run_sync(list_schemas(db.url))))
        return 0
    if args.action == "budget":
        if args.learners < 1:
            print("error: --learners must be at least 1", file=sys.stderr)
            return 2
        limits = run_sync(server_limits(db.url))
        print(format_budget(limits, args.learners))
        return 0

    schemas = run_sync(list_schemas(db.url))
    if args.all:
        chosen, what = [s.name for s in schemas], "every tutorial schema"
    else:
        chosen = [s.name for s in schemas if s.belongs_to(Learner(args.learner))]
        what = f"learner {args.learner!r}'s schemas"
    if not chosen:
        print(f"Nothing to drop: no {what} in this database.")
        return 0
    if not args.yes:
        print(f"Would drop {len(chosen)} schema(s), {what}: {', '.join(chosen)}")
        print("Nothing dropped: dropping needs the confirmation flag --yes.", file=sys.stderr)
        return 1
    dropped, skipped = run_sync(drop_each(db.url, chosen))
    print(f"Dropped {len(dropped)} schema(s): {', '.join(dropped) or 'none'}")
    for line in skipped:
        print(f"Skipped (in use or changed): {line}", file=sys.stderr)
    return 0 if not skipped else 1
