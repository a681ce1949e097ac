"""The report's data profile block: the run's profile.json (`data._profile`) as rows and sentences.

It reads only the JSON, so a report of an older run without a profile says so instead of failing.
"""

from __future__ import annotations

from typing import Any

__all__ = ["profile_view"]


def profile_view(profile: Any) -> dict[str, Any] | None:
    """What the report shows of a profile: notes, one row per column, class balance and duplicate counts; None without one."""
    if not isinstance(profile, dict) or not profile:
        return None
    if profile.get("skipped"):
        return {"skipped": str(profile["skipped"])}
    inputs = profile.get("inputs") if isinstance(profile.get("inputs"), dict) else {}
    columns = [
        [str(c.get("name")), str(c.get("type")), _pct(c.get("missing_fraction")), c.get("distinct"), _summary(c)]
        for c in inputs.get("columns") or []
        if isinstance(c, dict)
    ]
    whole = None if columns else {k: v for k, v in inputs.items() if k != "skipped"} or None
    target = profile.get("target_profile") if isinstance(profile.get("target_profile"), dict) else {}
    classes = target.get("classes") if isinstance(target.get("classes"), dict) else None
    dup = profile.get("duplicates") if isinstance(profile.get("duplicates"), dict) else {}
    across = dup.get("across_splits") if isinstance(dup.get("across_splits"), dict) else {}
    return {
        "notes": [str(n) for n in profile.get("notes") or []],
        "columns": columns,
        "inputs_summary": _inputs(whole) if whole else None,
        "inputs_skipped": inputs.get("skipped"),
        "classes": classes,
        "imbalance": target.get("imbalance"),
        "target_range": None if classes else _summary(target),
        "duplicates": [
            ("exact duplicate rows", dup.get("exact"), dup.get("policy", {}).get("exact"), (dup.get("removed") or {}).get("exact", 0)),
            ("near duplicate rows", dup.get("near"), dup.get("policy", {}).get("near"), (dup.get("removed") or {}).get("near", 0)),
            (
                f"conflicting rows (same inputs, other target; {dup.get('conflicting_groups', 0)} groups)",
                dup.get("conflicting"),
                dup.get("policy", {}).get("conflicting"),
                (dup.get("removed") or {}).get("conflicting", 0),
            ),
            *(
                (
                    f"{name} rows whose inputs sit in {' or '.join(e.get('against') or ['training'])} (of {e.get('rows')})",
                    e.get("exact", 0) + (e.get("near", 0) if e.get("match") == "near" else 0),
                    dup.get("policy", {}).get("across_splits"),
                    e.get("removed", 0),
                )
                for name, e in across.items()
                if isinstance(e, dict)
            ),
        ]
        if not dup.get("skipped")
        else [],
        "duplicates_skipped": dup.get("skipped"),
        "leakage": profile.get("leakage") or [],
        "leak_measure": profile.get("leak_measure"),
        "strongest": profile.get("strongest_columns") or [],
        "id_like": [e.get("column") for e in profile.get("id_like") or [] if isinstance(e, dict)],
        "constant": list(profile.get("constant") or []),
        "column_checks": profile.get("column_checks"),
    }


def _pct(v: Any) -> str:
    return f"{100 * v:.1f} %" if isinstance(v, (int, float)) else "n/a"


def _num(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)


def _summary(c: dict[str, Any]) -> str:
    """One line of what a column's type says of it: its range, its most frequent values, its lengths or its files."""
    parts = []
    if "low" in c and "high" in c:
        parts.append(f"{_num(c['low'])} to {_num(c['high'])}" + (f", mean {_num(c['mean'])}" if "mean" in c else ""))
    if c.get("top"):
        parts.append("top: " + ", ".join(f"{v} ({n})" for v, n in c["top"][:5]))
    if "mean_chars" in c:
        parts.append(f"{_num(c['mean_chars'])} characters, {_num(c.get('mean_words'))} words on average")
    for k in ("width", "height", "seconds", "kib"):
        if isinstance(c.get(k), dict):
            parts.append(f"{k} {_num(c[k].get('low'))}–{_num(c[k].get('high'))}")
    return "; ".join(parts)


def _inputs(whole: dict[str, Any]) -> str:
    parts = []
    for k, v in whole.items():
        if isinstance(v, dict) and "mean" in v:
            parts.append(f"{k.replace('_', ' ')}: mean {_num(v['mean'])}")
        elif isinstance(v, list) and len(v) <= 4:
            parts.append(f"{k.replace('_', ' ')}: {' × '.join(map(_num, v))}")
        elif isinstance(v, (int, float)):
            parts.append(f"{k.replace('_', ' ')}: {_num(v)}")
    return "; ".join(parts)
