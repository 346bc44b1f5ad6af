"""A small sample CRM (SQLite) that fits specs/example.toml: the demo's and the tests' CRM.

Some rows are bad on purpose, as real CRMs have: the plan rejects them by field and rule, and
one names a team the dialer does not have, so the dialer itself refuses it (and later plans hold
it back until the row changes).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa

SCHEMA = (
    """CREATE TABLE agents (
        username TEXT, password TEXT, full_name TEXT, level INTEGER, team TEXT,
        extension TEXT, email TEXT, is_active INTEGER)""",
    "CREATE TABLE calling_lists (id TEXT, name TEXT, campaign TEXT, is_active INTEGER)",
    """CREATE TABLE crm_leads (
        id INTEGER, list_id TEXT, phone TEXT, first_name TEXT, last_name TEXT, city TEXT,
        email TEXT, postal_code TEXT)""",
)

FIRST_NAMES = ("Asha", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jon",
               "Kemi", "Luis", "Maya", "Nikhil", "Olga", "Priya", "Quinn", "Ravi", "Sara",
               "Tomas", "Uma", "Victor", "Wen", "Yusuf")
LAST_NAMES = ("Patel", "Okafor", "Smith", "Garcia", "Novak", "Khan", "Ito", "Silva")


def sample_agents(count: int = 24) -> list[dict[str, Any]]:
    agents = []
    for n in range(count):
        agents.append({
            "username": f"{1001 + n}",
            "password": f"pw-{7000 + n * 37}",
            "full_name": f"{FIRST_NAMES[n % len(FIRST_NAMES)]} {LAST_NAMES[n % len(LAST_NAMES)]}",
            "level": 1 if n % 6 else 7,
            "team": "AGENTS" if n % 5 else "ADMIN",
            "extension": f"{8100 + n}",
            "email": f"agent{1001 + n}@example.com",
            "is_active": 1,
        })
    return agents


# Rows the plan must reject, each for one reason a contact centre will recognise.
BAD_AGENTS = (
    {"username": "2001", "password": "pw-2001", "full_name": "Level Twelve", "level": 12,
     "team": "AGENTS", "extension": "8201", "email": None, "is_active": 1},
    {"username": "2002", "password": "pw-2002", "full_name": "N" * 60, "level": 1,
     "team": "AGENTS", "extension": "8202", "email": None, "is_active": 1},
    {"username": "1003", "password": "pw-dup", "full_name": "Duplicate Of 1003", "level": 1,
     "team": "AGENTS", "extension": "8203", "email": None, "is_active": 1},
    {"username": "x", "password": "pw-x", "full_name": "Too Short Id", "level": 1,
     "team": "AGENTS", "extension": "8204", "email": None, "is_active": 1},
    # Valid for us, refused by the dialer: it has no NIGHTS user group.
    {"username": "2005", "password": "pw-2005", "full_name": "Night Owl", "level": 1,
     "team": "NIGHTS", "extension": "8205", "email": None, "is_active": 1},
)

LISTS = (
    {"id": "1101", "name": "Spring Renewals", "campaign": "TESTCAMP", "is_active": 1},
    {"id": "1102", "name": "Win-back 2026", "campaign": "SALES", "is_active": 1},
    {"id": "1103", "name": "Support Callbacks", "campaign": "SUPPORT", "is_active": 1},
    {"id": "1104", "name": "Dormant Q3", "campaign": "SALES", "is_active": 0},
    {"id": "1105", "name": "Bad", "campaign": "TESTCAMP", "is_active": 1},   # name too short
)


def sample_leads(count: int = 300, lists: Sequence[str] = ("1101", "1102", "1103"),
                 first_id: int = 1) -> list[dict[str, Any]]:
    leads = []
    for n in range(count):
        lead_id = first_id + n
        leads.append({
            "id": lead_id,
            "list_id": lists[n % len(lists)],
            "phone": f"+1 (555) {lead_id // 10000 % 1000:03d}-{lead_id % 10000:04d}",
            "first_name": FIRST_NAMES[n % len(FIRST_NAMES)],
            "last_name": LAST_NAMES[n % len(LAST_NAMES)],
            "city": ("Ahmedabad", "Charlotte", "Leeds", "Lyon")[n % 4],
            "email": None,
            "postal_code": f"{10000 + n % 90000}",
        })
    return leads


# Leads the plan must reject, or that must wait, each for a reason a list owner will recognise.
BAD_LEADS = (
    {"id": 90001, "list_id": "1101", "phone": "12345", "first_name": "Short", "last_name": "Number",
     "city": "Leeds", "email": None, "postal_code": "LS1"},
    {"id": 90002, "list_id": "1101", "phone": "555-CALL-NOW", "first_name": "Vanity",
     "last_name": "Number", "city": "Leeds", "email": None, "postal_code": "LS1"},
    {"id": 90003, "list_id": "9999", "phone": "5550109999", "first_name": "No", "last_name": "List",
     "city": "Lyon", "email": None, "postal_code": "69001"},
    {"id": 90004, "list_id": "1101", "phone": "+1 555 000 0001", "first_name": "Same",
     "last_name": "Phone", "city": "Lyon", "email": None, "postal_code": "69001"},
)


def create_crm(url: str, agents: Iterable[dict[str, Any]] | None = None,
               lists: Sequence[dict[str, Any]] = LISTS,
               leads: Sequence[dict[str, Any]] = ()) -> sa.Engine:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for statement in SCHEMA:
            conn.exec_driver_sql(statement)
        rows = list(sample_agents() if agents is None else agents)
        insert_agents(conn, rows)
        if lists:
            conn.execute(sa.text("INSERT INTO calling_lists VALUES "
                                 "(:id, :name, :campaign, :is_active)"), list(lists))
        insert_leads(conn, leads)
    return engine


def insert_leads(conn: sa.Connection, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        conn.execute(sa.text(
            "INSERT INTO crm_leads VALUES (:id, :list_id, :phone, :first_name, :last_name, "
            ":city, :email, :postal_code)"), list(rows))


def insert_agents(conn: sa.Connection, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        conn.execute(sa.text(
            "INSERT INTO agents VALUES (:username, :password, :full_name, :level, :team, "
            ":extension, :email, :is_active)"), list(rows))


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"
