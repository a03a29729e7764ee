"""What a benchmark needs installed, checked before it starts: a missing module exits 2 naming
the extra that brings it, instead of a traceback (or a misleading message) minutes in."""

from __future__ import annotations

import importlib.util
import sys

from tau_adapters.errors import install_hint


def require(script: str, needs: dict[str, str]) -> None:
    """`needs` maps module -> extra (or a pip requirement for what no extra brings)."""
    missing = {m: extra for m, extra in needs.items() if importlib.util.find_spec(m) is None}
    if not missing:
        return
    extras = sorted({e for e in missing.values() if not e.startswith("pip ")})
    lines = [f"{script}: missing module(s) {', '.join(sorted(missing))}."]
    if extras:
        lines.append(f"Install the extra(s): {install_hint(','.join(extras))}")
    lines += [f"{m}: {e}" for m, e in missing.items() if e.startswith("pip ")]
    print("\n".join(lines), file=sys.stderr)
    sys.exit(2)
