"""Copy-on-write databases: one parsed tau2 database per process, a cheap private view per episode.

tau2 builds a fresh pydantic database for every environment (airline: ~300 ms, ~25 MiB). Here the
database is parsed once (by tau2 itself) and frozen as the *base*. An episode gets a `CowDict` per
dict-valued field: a shallow dict copy whose entries still point at the base objects. The first time
an entry is reached by anything that may write (a WRITE tool, an initialisation action, an env
assertion), it is deep-copied into the episode, so the base is never changed. Tools that tau2 types as
READ run in *share* mode and see the base objects without copying them.

Because only touched entries can differ from the base, the database comparison tau2 does with
`sha256(json.dumps(db.model_dump(), sort_keys=True, default=str))` can be done on the touched entries
alone: `diff_digest` hashes exactly those entries (with tau2's serialisation) that differ from the
base. Two views of the same base have equal digests exactly when their full tau2 hashes are equal.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

from pydantic import BaseModel, TypeAdapter

_MISSING = object()


class CowState:
    """Mode shared by all `CowDict`s of one episode database."""

    __slots__ = ("share",)

    def __init__(self) -> None:
        self.share = False


class CowDict(dict):  # type: ignore[type-arg]
    """A dict that deep-copies a base entry into itself the first time it may be written.

    It is a real ``dict`` holding the episode's current entries, so pydantic serialises it (and
    tau2's own code reads it) like any other dict.
    """

    __slots__ = ("_base", "_owned", "_state", "_touched")

    def __init__(self, base: dict[Any, Any], state: CowState) -> None:
        dict.__init__(self, base)
        self._base = base
        self._state = state
        self._owned: set[Any] = set()
        self._touched: set[Any] = set()

    # -- reads that may hand out an entry ------------------------------------------------------
    def _own(self, key: Any) -> Any:
        value = dict.__getitem__(self, key)
        if self._state.share or key in self._owned:
            return value
        value = copy.deepcopy(value)
        dict.__setitem__(self, key, value)
        self._owned.add(key)
        self._touched.add(key)
        return value

    def __getitem__(self, key: Any) -> Any:
        return self._own(key)

    def get(self, key: Any, default: Any = None) -> Any:
        if dict.__contains__(self, key):
            return self._own(key)
        return default

    def values(self) -> Any:  # type: ignore[override]
        self._own_all()
        return dict.values(self)

    def items(self) -> Any:  # type: ignore[override]
        self._own_all()
        return dict.items(self)

    def _own_all(self) -> None:
        if self._state.share:
            return
        for key in list(dict.keys(self)):
            self._own(key)

    # -- writes ----------------------------------------------------------------------------------
    def __setitem__(self, key: Any, value: Any) -> None:
        dict.__setitem__(self, key, value)
        self._owned.add(key)
        self._touched.add(key)

    def __delitem__(self, key: Any) -> None:
        dict.__delitem__(self, key)
        self._owned.discard(key)
        self._touched.add(key)

    def pop(self, key: Any, default: Any = _MISSING) -> Any:
        if dict.__contains__(self, key):
            value = self._own(key)
            dict.__delitem__(self, key)
            self._touched.add(key)
            return value
        if default is _MISSING:
            raise KeyError(key)
        return default

    def popitem(self) -> tuple[Any, Any]:
        key = next(reversed(list(dict.keys(self))))
        return key, self.pop(key)

    def setdefault(self, key: Any, default: Any = None) -> Any:
        if dict.__contains__(self, key):
            return self._own(key)
        self[key] = default
        return default

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def clear(self) -> None:
        self._touched.update(dict.keys(self))
        dict.clear(self)
        self._owned.clear()

    def __ior__(self, other: Any) -> CowDict:  # type: ignore[override,misc]
        self.update(other)
        return self

    def __copy__(self) -> dict[Any, Any]:
        return {k: self[k] for k in dict.keys(self)}

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[Any, Any]:
        return {k: copy.deepcopy(dict.__getitem__(self, k), memo) for k in dict.keys(self)}

    def __reduce__(self) -> Any:
        return (dict, (dict(self),))

    def touched(self) -> Iterator[Any]:
        return iter(self._touched)


def _state_of(view: BaseModel | None) -> CowState | None:
    if view is None:
        return None
    for value in view.__dict__.values():
        if isinstance(value, CowDict):
            return value._state
    return None


def _dump_json(adapter: TypeAdapter[Any], value: Any) -> str:
    """tau2's serialisation of a database value (python-mode dump, sorted keys, str fallback)."""
    return json.dumps(adapter.dump_python(value), sort_keys=True, default=str)


class BaseDatabase:
    """A parsed tau2 database, frozen, that hands out copy-on-write episode views."""

    def __init__(self, db: BaseModel) -> None:
        self.db = db
        self.cls = type(db)
        self._fields: dict[str, tuple[Any, TypeAdapter[Any], TypeAdapter[Any] | None]] = {}
        for name, info in self.cls.model_fields.items():
            value = getattr(db, name)
            field_adapter: TypeAdapter[Any] = TypeAdapter(cast(Any, info.annotation))
            entry_adapter: TypeAdapter[Any] | None = None
            if isinstance(value, dict):
                args = getattr(info.annotation, "__args__", None)
                entry_type = args[1] if args and len(args) == 2 else Any
                entry_adapter = TypeAdapter(entry_type)
            self._fields[name] = (value, field_adapter, entry_adapter)
        self._entry_json: dict[tuple[str, Any], str] = {}

    def view(self) -> BaseModel:
        """A private copy-on-write episode database (microseconds for airline)."""
        state = CowState()
        values: dict[str, Any] = {}
        for name, (value, _, entry_adapter) in self._fields.items():
            if entry_adapter is not None:
                values[name] = CowDict(value, state)
            else:
                values[name] = copy.deepcopy(value)
        return self.cls.model_construct(**values)

    @staticmethod
    @contextmanager
    def sharing(view: BaseModel | None) -> Iterator[None]:
        """Let a read-only tool see base entries without copying them."""
        state = _state_of(view)
        if state is None or state.share:
            yield
            return
        state.share = True
        try:
            yield
        finally:
            state.share = False

    def _base_entry_json(self, name: str, key: Any, adapter: TypeAdapter[Any]) -> str:
        cache_key = (name, key)
        cached = self._entry_json.get(cache_key)
        if cached is None:
            cached = _dump_json(adapter, dict.__getitem__(self._fields[name][0], key))
            self._entry_json[cache_key] = cached
        return cached

    def digest(self, view: BaseModel) -> str:
        """A hash that is equal for two databases exactly when tau2's full hashes are equal.

        Views of this base hash only their entries that differ from the base. A database that is no
        longer a view (tau2's ``update_db`` rebuilds it from a dump) is hashed in full, field by field.
        """
        h = hashlib.sha256()
        for name, (base_value, field_adapter, entry_adapter) in self._fields.items():
            value = getattr(view, name)
            h.update(b"\x00field\x00" + name.encode())
            if (
                entry_adapter is not None
                and isinstance(value, CowDict)
                and value._base is base_value
            ):
                h.update(b"\x00diff\x00")
                for key in sorted(value.touched(), key=repr):
                    present = dict.__contains__(value, key)
                    in_base = key in base_value
                    if present:
                        text = _dump_json(entry_adapter, dict.__getitem__(value, key))
                        if in_base and text == self._base_entry_json(name, key, entry_adapter):
                            continue
                    elif not in_base:
                        continue
                    else:
                        text = "\x00deleted"
                    h.update(repr(key).encode() + b"\x00" + text.encode() + b"\x01")
            else:
                if entry_adapter is not None and isinstance(value, dict):
                    # A plain dict: hash it as a diff against the base too, so that the result
                    # stays comparable with views.
                    h.update(b"\x00diff\x00")
                    keys = set(value) | set(base_value)
                    for key in sorted(keys, key=repr):
                        if key in value:
                            text = _dump_json(entry_adapter, value[key])
                            if key in base_value and text == self._base_entry_json(
                                name, key, entry_adapter
                            ):
                                continue
                        else:
                            text = "\x00deleted"
                        h.update(repr(key).encode() + b"\x00" + text.encode() + b"\x01")
                else:
                    h.update(b"\x00full\x00" + _dump_json(field_adapter, value).encode())
        return h.hexdigest()
