"""keep_first's shared phones, asked of the CRM on a thread of its own (SharedPhonesLater): the
database works while the merge reads on, the answer is the same, and an error is raised where
the answer is asked for. Real SQLite CRMs, on a file and in memory."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from reconciler.adapters.crm.shared_phones import (
    SharedPhones,
    SharedPhonesLater,
    shared_phones,
    shared_phones_by_reading,
    shared_phones_later,
)
from reconciler.adapters.crm.source import CrmUnavailable
from reconciler.config.spec import ResourceSpec, load_spec
from reconciler.demo import crm as democrm
from tests.helpers import EXAMPLE_SPEC

LEADS = [
    {"id": n, "list_id": "1101", "phone": "5559999999" if n in (7, 12) else f"555{n:07d}",
     "first_name": "Lee", "last_name": f"Lead {n}", "city": "Leeds", "email": None,
     "postal_code": "LS1"}
    for n in range(1, 20)
]


@pytest.fixture
def resource() -> ResourceSpec:
    leads = load_spec(EXAMPLE_SPEC).leads
    assert leads is not None
    return leads


@pytest.fixture
def file_crm(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = democrm.create_crm(f"sqlite:///{tmp_path / 'crm.db'}", [], democrm.LISTS, LEADS)
    yield engine
    engine.dispose()


def asked_on(engine: sa.Engine, resource: ResourceSpec, threads: list[str]
             ) -> SharedPhonesLater:
    def find() -> SharedPhones:
        threads.append(threading.current_thread().name)
        return shared_phones(engine, resource)
    return SharedPhonesLater(find, engine)


def test_told_soon_the_crm_finds_them_on_a_thread_of_its_own_once(
    file_crm: sa.Engine, resource: ResourceSpec
) -> None:
    threads: list[str] = []
    later = asked_on(file_crm, resource, threads)
    later.soon()
    later.soon()
    assert later() == later() == {("1101", "5559999999"): "12"}     # "12" < "7" as text
    assert threads == ["shared-phones"]


def test_never_told_it_is_asked_on_the_callers_thread(
    file_crm: sa.Engine, resource: ResourceSpec
) -> None:
    threads: list[str] = []
    later = asked_on(file_crm, resource, threads)
    assert later() == {("1101", "5559999999"): "12"}
    later.soon()                                 # answered already: nothing more is asked
    assert later() == {("1101", "5559999999"): "12"}
    assert threads == [threading.current_thread().name]


def test_phones_read_by_reconciler_itself_are_read_on_the_callers_thread(
    file_crm: sa.Engine, resource: ResourceSpec
) -> None:
    """Where reconciler reads every lead to find them (no GROUP BY in the database), another
    thread would only take turns with the merge for the interpreter."""
    threads: list[str] = []

    def find() -> SharedPhones:
        threads.append(threading.current_thread().name)
        return shared_phones_by_reading(file_crm, resource)

    later = SharedPhonesLater(find, file_crm, in_database=False)
    later.soon()
    assert threads == []
    assert later() == {("1101", "5559999999"): "12"}
    assert threads == [threading.current_thread().name]


def test_an_in_memory_crm_is_asked_on_the_callers_thread(resource: ResourceSpec) -> None:
    """Another thread would get a connection to another, empty in-memory database."""
    engine = democrm.create_crm("sqlite://", [], democrm.LISTS, LEADS)
    threads: list[str] = []
    later = asked_on(engine, resource, threads)
    later.soon()
    assert later() == {("1101", "5559999999"): "12"}
    assert threads == [threading.current_thread().name]
    engine.dispose()


def test_an_error_on_the_thread_is_raised_where_the_answer_is_asked_for(
    tmp_path: Path, resource: ResourceSpec
) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'empty.db'}")    # no leads table
    later = shared_phones_later(engine, resource)
    later.soon()
    with pytest.raises(CrmUnavailable, match="no such table"):
        later()
    with pytest.raises(CrmUnavailable, match="no such table"):
        later()                                  # asked again: the same answer
    engine.dispose()


def test_an_error_without_the_thread_is_asked_again_on_the_next_call(
    tmp_path: Path, resource: ResourceSpec
) -> None:
    calls: list[Any] = []

    def find() -> SharedPhones:
        calls.append(1)
        if len(calls) == 1:
            raise CrmUnavailable("leads: CRM query failed: locked")
        return {}

    engine = sa.create_engine("sqlite://")
    later = SharedPhonesLater(find, engine)
    with pytest.raises(CrmUnavailable, match="locked"):
        later()
    assert later() == {}
    assert len(calls) == 2
    engine.dispose()
