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

from tutorial_kit.database import find_database, one_off_connection, run_sync
from tutorial_kit.schema import Learner, TutorialSchema, drop_schema, tutorial_schemas

#: SQLAlchemy's QueuePool defaults: what one engine may hold at once.
DEFAULT_POOL_SIZE = 5
DEFAULT_MAX_OVERFLOW = 10
#: Server connections one learner held, measured by ``make classroom-load`` (docs/benchmark.md,
#: "Classroom load", 2026-11-25): at most this many in most lessons …
TYPICAL_PER_LEARNER = 4
#: … and, for a few seconds, this many in the lessons that open many connections on purpose
#: (concurrency, a web app under load, clients with and without PgBouncer).
LESSON_PEAKS = {"08": 8, "11": 11, "13": 22}
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
    def for_learners(self) -> int:
        """Slots an ordinary role can still take: the limit less the reserved and the used."""
        return self.max_connections - self.superuser_reserved - self.reserved - self.in_use


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


def format_budget(limits: ServerLimits, learners: int, pool_size: int = DEFAULT_POOL_SIZE,
                  max_overflow: int = DEFAULT_MAX_OVERFLOW) -> str:
    """The ``class budget`` report: the measured need, the server's room, and what to do."""
    per_kernel = pool_size + max_overflow
    peak_lesson, peak = max(LESSON_PEAKS.items(), key=lambda kv: kv[1])
    usual, in_step = learners * TYPICAL_PER_LEARNER, learners * peak
    free = limits.for_learners
    reserved = f"{limits.superuser_reserved} reserved for superusers"
    if limits.reserved:
        reserved += f", {limits.reserved} for pg_use_reserved_connections"
    spikes = ", ".join(f"{lesson}: {n}" for lesson, n in sorted(LESSON_PEAKS.items()))
    lines = [
        f"Server: PostgreSQL {limits.version}: max_connections = {limits.max_connections} "
        f"({reserved}), {limits.in_use} in use now -> {free} free for learners.",
        f"One engine's pool: pool_size {pool_size} + max_overflow {max_overflow} = "
        f"{per_kernel}; if every learner's kernel filled one: {learners} × {per_kernel} = "
        f"{learners * per_kernel}.",
        f"Measured (make classroom-load): most lessons hold ≤ {TYPICAL_PER_LEARNER} per "
        f"learner -> {learners} × {TYPICAL_PER_LEARNER} = {usual}. Lessons that open many "
        f"connections on purpose, for a few seconds ({spikes}): the whole class running "
        f"lesson {peak_lesson}'s cell together needs {learners} × {peak} = {in_step}.",
        "",
    ]
    if in_step <= free:
        lines.append(f"OK: even the whole class in step at lesson {peak_lesson} fits "
                     f"({in_step} ≤ {free}).")
        return "\n".join(lines)
    if usual <= free:
        lines.append(
            f"Fits for most lessons ({usual} ≤ {free}), but NOT when the class runs the "
            f"many-connection cells of lessons {', '.join(sorted(LESSON_PEAKS))} at the same "
            f"moment ({in_step} > {free}): the server then refuses new connections "
            "(\"too many clients already\"). Have the room run those cells in turns, or:"
        )
    else:
        lines.append(f"Does NOT fit: even ordinary lessons need {usual} > {free}.")
    need = in_step + limits.superuser_reserved + limits.reserved + limits.in_use
    lines += [
        "",
        "Recommended for this class, in order:",
        f"  1. Raise max_connections to about {_round_up(need)} (a restart; on a managed "
        "server, its parameter settings or a larger instance). An idle connection costs a "
        "backend process of a few MB.",
        "  2. Or put PgBouncer in front (lesson 13) in pool_mode = session with "
        f"default_pool_size below {free}: learners beyond it wait in PgBouncer's queue "
        "instead of being refused. Transaction pooling needs the prepared-statement "
        "settings lesson 13 shows, which the other lessons do not use.",
        "  3. Ask learners to shut down kernels they are not using (Kernel → Shut Down "
        "Kernel): each notebook's engine keeps its pooled connections until "
        "engine.dispose(), the last cell.",
        "The lessons keep SQLAlchemy's default pool (pool_size=5, max_overflow=10) in "
        "their create_async_engine() calls, because that call is what they teach.",
    ]
    return "\n".join(lines)


def _round_up(n: int) -> int:
    return max(100, -(-int(n * 1.2) // 50) * 50)


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
    budget.add_argument("--pool-size", type=int, default=DEFAULT_POOL_SIZE)
    budget.add_argument("--max-overflow", type=int, default=DEFAULT_MAX_OVERFLOW)
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
        print(format_budget(limits, args.learners, args.pool_size, args.max_overflow))
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
