"""Copy-on-write episode databases against tau2's own database hash, property-based.

Random sequences of dict operations (item writes, ``del``, ``pop``, ``popitem``, ``clear``,
``setdefault``, ``update``, ``|=``, iteration with writes, share-mode reads) are applied to a
copy-on-write view of tau2's mock database and, in parallel, to a plain deep copy of it (the
reference). After every operation: the view holds what the reference holds, tau2's own full hash
(`get_pydantic_hash`) of both is equal, our diff digest of the view equals the digest of the plain
reference, the digest says "unchanged" exactly when tau2's hash does, and the parsed base is
untouched.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from conftest import requires_tau2

hypothesis = pytest.importorskip("hypothesis", reason="property tests need hypothesis (dev extra)")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

pytestmark = requires_tau2

FIELDS = {"tasks": ["task_1", "task_x", "task_y"], "users": ["user_1", "user_x"]}
VALUES = {"tasks": ["pending", "completed"], "users": ["Test User", "Other Name"]}


@pytest.fixture(scope="module")
def mock_db() -> Any:
    from tau2.domains.mock.data_model import get_db

    return get_db()


def _tau2_hash(db: Any) -> str:
    """tau2's own database hash (the reference the digest must agree with)."""
    from tau2.utils.pydantic_utils import get_pydantic_hash

    return get_pydantic_hash(db)


def _entry(field: str, key: str, variant: int) -> Any:
    from tau2.domains.mock.data_model import Task, User

    if field == "tasks":
        if key == "task_1" and variant == 0:  # equal to the base entry
            return Task(task_id="task_1", title="Test task", description="A test task",
                        status="pending")  # fmt: skip
        return Task(task_id=key, title=f"title {variant}", status=VALUES["tasks"][variant % 2])
    if key == "user_1" and variant == 0:
        return User(user_id="user_1", name="Test User", tasks=["task_1"])
    return User(user_id=key, name=f"name {variant}", tasks=[])


def _mutate(field: str, entry: Any, value: str) -> None:
    if field == "tasks":
        entry.status = value
    else:
        entry.name = value


field_st = st.sampled_from(sorted(FIELDS))


@st.composite
def operation(draw: Any) -> tuple[Any, ...]:
    field = draw(field_st)
    key = draw(st.sampled_from(FIELDS[field]))
    value = draw(st.sampled_from(VALUES[field]))
    variant = draw(st.integers(0, 2))
    kind = draw(
        st.sampled_from(
            [
                "getitem_mutate", "get_mutate", "set", "del", "pop", "pop_default", "popitem",
                "clear", "setdefault_mutate", "update", "ior", "values_mutate", "items_mutate",
                "share_read", "iterate",
            ]
        )
    )  # fmt: skip
    pairs = draw(st.lists(st.tuples(st.sampled_from(FIELDS[field]), st.integers(0, 2)), max_size=2))
    return (kind, field, key, value, variant, pairs)


def _apply(op: tuple[Any, ...], db: Any, sharing: Any) -> Any:
    """Apply one operation to `db` (a view or the plain reference); return what it gave back."""
    kind, field, key, value, variant, pairs = op
    d = getattr(db, field)
    if kind == "getitem_mutate":
        if key in d:
            _mutate(field, d[key], value)
    elif kind == "get_mutate":
        entry = d.get(key)
        if entry is not None:
            _mutate(field, entry, value)
    elif kind == "set":
        d[key] = _entry(field, key, variant)
    elif kind == "del":
        if key in d:
            del d[key]
    elif kind in ("pop", "pop_default"):
        if kind == "pop" and key not in d:
            with pytest.raises(KeyError):
                d.pop(key)
            return None
        popped = d.pop(key, None) if kind == "pop_default" else d.pop(key)
        if popped is not None:  # the popped entry is the episode's own: writing it is harmless
            _mutate(field, popped, value)
            return popped.model_dump()
        return None
    elif kind == "popitem":
        if d:
            k, v = d.popitem()
            _mutate(field, v, value)
            return k
    elif kind == "clear":
        d.clear()
    elif kind == "setdefault_mutate":
        _mutate(field, d.setdefault(key, _entry(field, key, variant)), value)
    elif kind == "update":
        d.update({k: _entry(field, k, v) for k, v in pairs})
    elif kind == "ior":
        d |= {k: _entry(field, k, v) for k, v in pairs}
    elif kind == "values_mutate":
        for entry in d.values():
            _mutate(field, entry, value)
    elif kind == "items_mutate":
        for k, entry in d.items():
            if k == key:
                _mutate(field, entry, value)
    elif kind == "share_read":
        with sharing(db):
            if key in d:
                return d[key].model_dump()
    elif kind == "iterate":
        return list(d)
    return None


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=st.lists(operation(), max_size=12))
def test_view_matches_a_plain_copy_and_tau2_hash(mock_db: Any, ops: list[tuple[Any, ...]]) -> None:
    from tau_adapters.domains.cow import BaseDatabase, CowDict

    base_hash = _tau2_hash(mock_db)
    base = BaseDatabase(mock_db)
    untouched = base.digest(base.view())
    view = base.view()
    assert all(isinstance(getattr(view, f), CowDict) for f in FIELDS)
    reference = copy.deepcopy(mock_db)
    for op in ops:
        got = _apply(op, view, BaseDatabase.sharing)
        expected = _apply(op, reference, BaseDatabase.sharing)
        assert got == expected, op
        for field in FIELDS:
            assert list(getattr(view, field)) == list(getattr(reference, field)), op
            assert dict.items(getattr(view, field)) == dict.items(getattr(reference, field)), op
        tau2_view, tau2_reference = _tau2_hash(view), _tau2_hash(reference)
        assert tau2_view == tau2_reference, op
        digest = base.digest(view)
        assert digest == base.digest(reference), op
        assert (digest == untouched) == (tau2_reference == base_hash), op
        assert _tau2_hash(mock_db) == base_hash, f"the base changed after {op}"


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(a=st.lists(operation(), max_size=8), b=st.lists(operation(), max_size=8))
def test_two_views_digest_equal_exactly_when_tau2_hashes_are(
    mock_db: Any, a: list[tuple[Any, ...]], b: list[tuple[Any, ...]]
) -> None:
    from tau_adapters.domains.cow import BaseDatabase

    base = BaseDatabase(mock_db)
    first, second = base.view(), base.view()
    for op in a:
        _apply(op, first, BaseDatabase.sharing)
    for op in b:
        _apply(op, second, BaseDatabase.sharing)
    same_tau2 = _tau2_hash(first) == _tau2_hash(second)
    assert (base.digest(first) == base.digest(second)) == same_tau2


def test_deleting_and_restoring_an_entry_digests_as_untouched(mock_db: Any) -> None:
    """Hand-written edge cases: a deletion shows in the digest; restoring the equal entry hides it."""
    from tau_adapters.domains.cow import BaseDatabase

    base = BaseDatabase(mock_db)
    untouched = base.digest(base.view())
    view = base.view()
    del view.tasks["task_1"]
    assert base.digest(view) != untouched
    assert "task_1" in mock_db.tasks  # base untouched
    view.tasks["task_1"] = _entry("tasks", "task_1", 0)
    assert base.digest(view) == untouched and _tau2_hash(view) == _tau2_hash(mock_db)
    view.users.clear()
    assert base.digest(view) != untouched and mock_db.users
    view.users.setdefault("user_1", _entry("users", "user_1", 0))
    assert base.digest(view) == untouched
    view.tasks["task_x"] = _entry("tasks", "task_x", 1)
    assert base.digest(view) != untouched
    assert view.tasks.pop("task_x").task_id == "task_x"
    assert base.digest(view) == untouched
