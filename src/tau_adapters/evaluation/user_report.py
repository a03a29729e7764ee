"""The user simulator's part of a run, read from its rows: who played the user (fingerprints), what
the user-response cache saved, how many failures the user ended, and what to warn about.

`summary.json`, `report` and `report A B` all use these, so the three always agree.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tau_adapters.episode.user_side import KINDS, user_side
from tau_adapters.users.fingerprint import describe, differences

Row = Mapping[str, Any]


def _fingerprint(row: Row) -> dict[str, Any] | None:
    value = row.get("user_fingerprint")
    return dict(value) if isinstance(value, Mapping) else None


def _by_domain(rows: Iterable[Row]) -> dict[str, list[Row]]:
    grouped: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        grouped[str(row.get("domain"))].append(row)
    return dict(sorted(grouped.items()))


def fingerprints(rows: Iterable[Row]) -> dict[str, dict[str, Any]]:
    """Per domain: the most common user fingerprint and how many episodes each id played.

    More than one id in a domain means the user changed during the run (or a resumed run mixed
    two users): ``mixed`` is then true."""
    result: dict[str, dict[str, Any]] = {}
    for domain, group in _by_domain(rows).items():
        seen = [fp for fp in (_fingerprint(row) for row in group) if fp is not None]
        if not seen:
            result[domain] = {"fingerprint": None, "episodes_by_id": {}, "mixed": False}
            continue
        counts = Counter(str(fp.get("id")) for fp in seen)
        common = counts.most_common(1)[0][0]
        chosen = next(fp for fp in seen if str(fp.get("id")) == common)
        result[domain] = {
            "fingerprint": chosen,
            "episodes_by_id": dict(counts),
            "mixed": len(counts) > 1,
        }
    return result


def cache_stats(rows: Iterable[Row]) -> dict[str, Any] | None:
    """Hits, misses, saved cost and tokens of the user-response cache; None if none was used."""
    totals = {"hits": 0, "misses": 0, "saved_cost": 0.0, "saved_tokens": 0}
    used = False
    for row in rows:
        usage = row.get("usage")
        user = usage.get("user") if isinstance(usage, Mapping) else None
        if not isinstance(user, Mapping) or "cache_hits" not in user:
            continue
        used = True
        totals["hits"] += int(user.get("cache_hits") or 0)
        totals["misses"] += int(user.get("cache_misses") or 0)
        totals["saved_cost"] += float(user.get("saved_cost") or 0.0)
        totals["saved_tokens"] += int(user.get("saved_tokens") or 0)
    if not used:
        return None
    asked = totals["hits"] + totals["misses"]
    return {**totals, "hit_rate": totals["hits"] / asked if asked else None}


def user_side_share(rows: Iterable[Row]) -> dict[str, dict[str, Any]]:
    """Per domain: episodes the user ended without success, by kind, and their share."""
    result: dict[str, dict[str, Any]] = {}
    for domain, group in _by_domain(rows).items():
        kinds = Counter(
            kind for kind in (row.get("user_side") or user_side(row) for row in group) if kind
        )
        failures = sum(kinds.values())
        result[domain] = {
            "episodes": len(group),
            "user_side": failures,
            "share": failures / len(group) if group else None,
            "kinds": {kind: kinds.get(kind, 0) for kind in KINDS},
        }
    return result


def warnings(rows: Sequence[Row]) -> list[str]:
    """What a reader must know before trusting the numbers."""
    notes = []
    cache = cache_stats(rows)
    if cache is not None and cache["hits"]:
        hot = sorted(
            {
                float(fp["sampling"]["temperature"])
                for fp in (_fingerprint(row) for row in rows)
                if fp
                and isinstance(fp.get("sampling"), Mapping)
                and isinstance(fp["sampling"].get("temperature"), int | float)
                and fp["sampling"]["temperature"] > 0
            }
        )
        if hot:
            notes.append(
                f"USER CACHE REPLAYED {cache['hits']} replies at user temperature "
                f"{', '.join(f'{t:g}' for t in hot)}: each replayed conversation is one sample "
                "of the user, fixed when first cached; variance across re-runs is not measured"
            )
    for domain, entry in fingerprints(rows).items():
        if entry["mixed"]:
            notes.append(
                f"{domain}: the user fingerprint changed within the run "
                f"({len(entry['episodes_by_id'])} ids): its episodes had different users"
            )
    return notes


def user_summary(rows: Sequence[Row]) -> dict[str, Any]:
    """The ``user`` block of summary.json and report.json."""
    return {
        "fingerprints": fingerprints(rows),
        "cache": cache_stats(rows),
        "user_side": user_side_share(rows),
        "warnings": warnings(rows),
    }


def compare_fingerprints(rows_a: Sequence[Row], rows_b: Sequence[Row]) -> dict[str, Any]:
    """Per domain in both runs: whether the two users were the same, and what differs."""
    fa, fb = fingerprints(rows_a), fingerprints(rows_b)
    result: dict[str, Any] = {}
    for domain in sorted(set(fa) & set(fb)):
        a, b = fa[domain]["fingerprint"], fb[domain]["fingerprint"]
        same = (a or {}).get("id") == (b or {}).get("id") and not (
            fa[domain]["mixed"] or fb[domain]["mixed"]
        )
        result[domain] = {
            "same": same,
            "a": (a or {}).get("id"),
            "b": (b or {}).get("id"),
            "differences": [] if same else differences(a, b),
            "mixed": {"a": fa[domain]["mixed"], "b": fb[domain]["mixed"]},
        }
    return result


def user_header_lines(user: Mapping[str, Any]) -> list[str]:
    """Lines for the top of a printed report: the user, the cache, the warnings."""
    lines = []
    for domain, entry in (user.get("fingerprints") or {}).items():
        lines.append(f"user simulator ({domain}): {describe(entry.get('fingerprint'))}")
    cache = user.get("cache")
    if cache:
        rate = cache.get("hit_rate")
        lines.append(
            f"user cache: {cache['hits']} hits, {cache['misses']} misses"
            + (f" ({rate:.0%} hit rate)" if rate is not None else "")
            + f", saved ${cache['saved_cost']:.4f} and {cache['saved_tokens']} tokens"
        )
    lines += [f"WARNING: {note}" for note in user.get("warnings") or []]
    return lines


def difference_lines(domain: str, entry: Mapping[str, Any] | None) -> list[str]:
    """How the user changed between two runs, for a domain (nothing when it did not)."""
    if not entry or entry.get("same"):
        return []
    lines = [f"{domain}: USER SIMULATOR DIFFERS ({entry.get('a')} -> {entry.get('b')})"]
    for diff in entry.get("differences") or []:
        lines.append(f"  {diff['field']}: {diff['a']!r} -> {diff['b']!r}")
    mixed = entry.get("mixed") or {}
    for side in ("a", "b"):
        if mixed.get(side):
            lines.append(f"  run {side.upper()} mixed several users in this domain")
    return lines
