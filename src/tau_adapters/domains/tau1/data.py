"""Copy-on-write views of tau-bench v1 data: one parsed copy per process, a cheap view per episode.

v1's data is a plain dict of tables (airline: flights, reservations, users; retail: orders,
products, users), each a dict of JSON entries that v1's tools mutate in place. v1 itself re-reads
the JSON files for every environment and twice per reward (airline: ~0.4 s a load, ~0.3 s a hash).
Here the files are loaded once, by v1's own ``load_data``; an episode gets a fresh top-level dict
whose tables are `CowDict`s (see `cow`): an entry is deep-copied into the episode the first time a
tool may write it, so the base is never changed. v1 declares no read/write tool types, so the tools
that run in *share* mode (seeing base entries without a copy) are listed by name below, after
reading each one's source at the pinned commit; any other tool runs in copy mode.

v1 compares databases by ``sha256(str(to_hashable(data)))``. Only touched entries can differ from
the base, so `digest` hashes, with v1's own ``to_hashable``, exactly the entries that differ from the
base: two views of one base have equal digests exactly when v1's full hashes are equal.
"""

from __future__ import annotations

import copy
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from tau_adapters.domains.cow import CowDict, CowState

#: v1 tools that only read ``data`` (checked against their source at the pinned commit).
READ_ONLY_TOOLS: dict[str, frozenset[str]] = {
    "airline": frozenset(
        {
            "calculate",
            "get_reservation_details",
            "get_user_details",
            "list_all_airports",
            "search_direct_flight",
            "search_onestop_flight",
            "think",
            "transfer_to_human_agents",
        }
    ),
    "retail": frozenset(
        {
            "calculate",
            "find_user_id_by_email",
            "find_user_id_by_name_zip",
            "get_order_details",
            "get_product_details",
            "get_user_details",
            "list_all_product_types",
            "think",
            "transfer_to_human_agents",
        }
    ),
}


#: v1 hash strings remembered per process (keyed by digest; each entry ~150 bytes).
V1_HASH_MEMO = 4096
_MISSING = object()


def _tuple_text(parts: list[str]) -> str:
    """``str`` of a tuple whose elements have these texts (a 1-tuple keeps its comma)."""
    if len(parts) == 1:
        return f"({parts[0]},)"
    return "(" + ", ".join(parts) + ")"


class BaseData:
    """v1's data, loaded once and frozen, handing out copy-on-write episode views."""

    def __init__(self, data: Mapping[str, Any], to_hashable: Callable[[Any], Any]) -> None:
        self.tables: dict[str, Any] = dict(data)
        self._to_hashable = to_hashable
        self._entry_text: dict[tuple[str, Any], str] = {}
        self._v1_hashes: OrderedDict[str, str] = OrderedDict()
        self._memo_lock = threading.Lock()

    def view(self) -> dict[str, Any]:
        """A private episode copy (microseconds): shared state, one `CowDict` per dict table."""
        state = CowState()
        return {
            name: CowDict(table, state) if isinstance(table, dict) else copy.deepcopy(table)
            for name, table in self.tables.items()
        }

    @staticmethod
    def state_of(view: Mapping[str, Any]) -> CowState | None:
        for table in view.values():
            if isinstance(table, CowDict):
                return table._state
        return None

    def _text(self, value: Any) -> str:
        return str(self._to_hashable(value))

    def _base_text(self, name: str, key: Any) -> str:
        cached = self._entry_text.get((name, key))
        if cached is None:
            cached = self._text(dict.__getitem__(self.tables[name], key))
            self._entry_text[(name, key)] = cached
        return cached

    def digest(self, data: Mapping[str, Any]) -> str:
        """Equal for two datasets exactly when v1's ``consistent_hash(to_hashable(...))`` is.

        A view hashes only its touched entries that differ from the base; any other dict table is
        compared entry by entry against the base the same way; anything else is hashed in full.
        """
        h = hashlib.sha256()
        for name in sorted(set(data) | set(self.tables), key=repr):
            h.update(b"\x00table\x00" + repr(name).encode())
            base = self.tables.get(name)
            if name not in data:
                h.update(b"\x00missing")
                continue
            value = data[name]
            if isinstance(base, dict) and isinstance(value, dict):
                if isinstance(value, CowDict) and value._base is base:
                    keys: Any = value.touched()
                else:
                    keys = set(dict.keys(value)) | set(base)
                h.update(b"\x00diff\x00")
                for key in sorted(keys, key=repr):
                    present = dict.__contains__(value, key)
                    if present:
                        text = self._text(dict.__getitem__(value, key))
                        if key in base and text == self._base_text(name, key):
                            continue
                    elif key not in base:
                        continue
                    else:
                        text = "\x00deleted"
                    h.update(repr(key).encode() + b"\x00" + text.encode() + b"\x01")
            else:
                h.update(b"\x00full\x00" + self._text(value).encode())
        return h.hexdigest()

    def v1_hash(self, data: Mapping[str, Any]) -> str:
        """v1's own ``Env.get_data_hash`` string, ``sha256(str(to_hashable(data)))``, of a view.

        ``str`` of v1's nested tuples is built from per-entry texts: an entry still shared with
        the base (untouched, or only read) reuses the base's cached text, so only entries the
        episode wrote are rendered again; the rest is one join and one sha256 (airline: ~3.6 MB,
        ~30 ms). The result is memoised by `digest` (equal digests mean equal v1 hashes), so a
        task's gold state and an agent state equal to it are hashed once per process.
        """
        digest = self.digest(data)
        with self._memo_lock:
            cached = self._v1_hashes.get(digest)
            if cached is not None:
                self._v1_hashes.move_to_end(digest)
                return cached
        tables = []
        for name in sorted(data):
            value = data[name]
            base = self.tables.get(name)
            if isinstance(value, dict):
                parts = []
                for key in sorted(dict.keys(value)):
                    entry = dict.__getitem__(value, key)
                    if isinstance(base, dict) and dict.get(base, key, _MISSING) is entry:
                        text = self._base_repr(name, key, entry)
                    else:
                        text = repr(self._to_hashable(entry))
                    parts.append(f"({key!r}, {text})")
                body = _tuple_text(parts)
            else:
                body = repr(self._to_hashable(value))
            tables.append(f"({name!r}, {body})")
        result = hashlib.sha256(_tuple_text(tables).encode("utf-8")).hexdigest()
        with self._memo_lock:
            self._v1_hashes[digest] = result
            while len(self._v1_hashes) > V1_HASH_MEMO:
                self._v1_hashes.popitem(last=False)
        return result

    def _base_repr(self, name: str, key: Any, entry: Any) -> str:
        # str() of a tuple is its repr; other values (none in v1's data) are rendered directly.
        if isinstance(entry, (dict, list, set, tuple)):
            return self._base_text(name, key)
        return repr(self._to_hashable(entry))

    def materialize(self, view: Mapping[str, Any]) -> dict[str, Any]:
        """A plain deep copy of a view (for comparisons with v1's own full hash; slow)."""
        return {
            name: {key: copy.deepcopy(dict.__getitem__(table, key)) for key in dict.keys(table)}
            if isinstance(table, dict)
            else copy.deepcopy(table)
            for name, table in view.items()
        }
