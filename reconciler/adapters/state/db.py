"""Open the state database, upgrade it with Alembic, and refuse to use a schema that is behind.

Alembic is imported only to migrate, or to explain a schema that is not current: it costs
more start-up time than the commands that merely read or write state need (`status`, `plan`).
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from reconciler.errors import SchemaOutdated, StateError, StateUnavailable
from reconciler.redact import redact_text

if TYPE_CHECKING:
    from alembic.config import Config

# The migrations: inside the installed package (pyproject maps alembic/ to
# reconciler.migrations), or at the top of a checkout, beside the package (see alembic.ini).
_PACKAGE = Path(__file__).resolve().parents[2]     # the reconciler package
MIGRATIONS = next((path for path in (_PACKAGE / "migrations", _PACKAGE.parent / "alembic")
                   if (path / "env.py").is_file() and (path / "versions").is_dir()),
                  _PACKAGE.parent / "alembic")


def open_engine(url: str) -> sa.Engine:
    kwargs: dict[str, Any] = {}
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise StateError(f"state.url is not usable: {redact_text(str(exc))}") from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend not in ("sqlite", "postgresql"):
        # The lead writes are SQLite's and PostgreSQL's own (adapters/state/lead_writes.py).
        raise StateError(f"state.url is not usable: the state database is SQLite or "
                         f"PostgreSQL, not {backend}")
    if backend == "sqlite":
        # Several processes may share one SQLite file: wait for a writer instead of failing.
        kwargs["connect_args"] = {"timeout": 30}
    elif driver == "psycopg":
        # No server-side prepared statements: psycopg prepares a statement run five times, and
        # PostgreSQL then keeps one plan for it, made while the table was small. An apply's
        # lead table grows by thousands of rows a minute from empty, and such a plan walked
        # the whole table for every lead recorded (an apply of 100,000 new leads: 53-77 s of
        # it, 13 s planned each time).
        kwargs["connect_args"] = {"prepare_threshold": None}
    try:
        engine = sa.create_engine(url, **kwargs)
    except (sa.exc.ArgumentError, ImportError) as exc:
        raise StateError(f"state.url is not usable: {redact_text(str(exc))}") from None
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    sa.event.listen(engine, "handle_error", _state_unavailable)
    return engine


def _state_unavailable(context: sa.engine.ExceptionContext) -> None:
    """SQLAlchemy's handle_error hook: a database error of the state database (connecting,
    reading, writing) reaches every caller as our StateUnavailable, so that the commands and
    the daemon deal with our errors only. IntegrityError is left alone: the lease counts on
    it to see that another process inserted the same row first."""
    error = context.sqlalchemy_exception
    if isinstance(error, sa.exc.DBAPIError) and not isinstance(error, sa.exc.IntegrityError):
        raise unavailable(context.engine, error) from error


def unavailable(engine: sa.Engine | None, error: sa.exc.DBAPIError) -> StateUnavailable:
    """StateUnavailable for `error`, naming the database (without its password)."""
    where = f" {engine.url.render_as_string(hide_password=True)}" if engine else ""
    return StateUnavailable(f"state database{where}: {_reason(error)}")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def alembic_config() -> Config:
    from alembic.config import Config

    if not MIGRATIONS.is_dir():
        raise StateError(f"state migrations not found at {MIGRATIONS}")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: sa.Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    from alembic import command

    _run(engine, command.upgrade, revision)


def downgrade(engine: sa.Engine, revision: str) -> None:
    from alembic import command

    _run(engine, command.downgrade, revision)


def _run(engine: sa.Engine, action: Any, revision: str) -> None:
    from alembic.util.exc import CommandError

    config = alembic_config()
    try:
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            action(config, revision)
    except CommandError as exc:       # an unknown or unreachable revision
        raise StateError(f"state database: cannot migrate to {revision!r}: {exc}") from None


def require_current(engine: sa.Engine) -> None:
    """Every command that touches state calls this first."""
    if _stored_revisions(engine) == [_head_of_files()]:
        return                     # current: the usual case, answered without Alembic
    current, head = current_revision(engine), head_revision()
    if current == head:
        return
    if current is None:
        found = "is empty"
    elif not _known(current):
        raise SchemaOutdated(
            f"state database is at {current}, which this version does not know (a newer "
            f"reconciler made it?); use that version, or a fresh state database")
    else:
        found = f"is at {current}"
    raise SchemaOutdated(
        f"state database {found}, this version needs {head}: run `reconciler db upgrade`")


def _stored_revisions(engine: sa.Engine) -> list[str]:
    """The revision(s) Alembic recorded in the database (none when it is empty)."""
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("alembic_version"):
            return []
        return list(conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())


@cache
def _head_of_files() -> str | None:
    """The head revision, from the `revision` and `down_revision` of the migration files: what
    Alembic's ScriptDirectory finds (tests/adapters/state check they agree), without loading it.
    None when there is no single head; then require_current asks Alembic."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Assign):
                target, expression = node.targets[0], node.value
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                target, expression = node.target, node.value
            else:
                continue
            if not isinstance(target, ast.Name):
                continue
            if target.id == "revision":
                revisions.add(ast.literal_eval(expression))
            elif target.id == "down_revision" and (parent := ast.literal_eval(expression)):
                parents.update((parent,) if isinstance(parent, str) else parent)
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _known(revision: str) -> bool:
    from alembic.script import ScriptDirectory
    from alembic.script.revision import ResolutionError
    from alembic.util.exc import CommandError

    try:
        return ScriptDirectory.from_config(alembic_config()).get_revision(revision) is not None
    except (CommandError, ResolutionError):
        return False


def _reason(exc: sa.exc.DBAPIError) -> str:
    """The driver's first line of error (some drivers add hints on further lines)."""
    lines = str(exc.orig or exc).strip().splitlines()
    return redact_text(lines[0] if lines else type(exc.orig or exc).__name__)
