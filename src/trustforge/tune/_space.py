"""Search spaces: a spec's `tune.space` as Optuna suggestions, and a trial's values written back into the spec.

Each entry of `tune.space` maps one to one onto Optuna's `suggest_float`, `suggest_int` and
`suggest_categorical`, under the dotted field's name, so Optuna's dashboards and importances
speak the spec's language. Optuna's categorical choices must be scalars; a list choice
(`model.hidden: [[64], [128, 64]]`) is offered as its JSON text and decoded back here.
"""

from __future__ import annotations

import copy
import json
from typing import Any, Mapping

__all__ = ["suggest", "decode", "apply_params", "spec_point", "space_change"]


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str))


def suggest(trial: Any, space: Mapping[str, Any]) -> dict[str, Any]:
    """The trial's values for every field of `space` (decoded: lists are lists again)."""
    out: dict[str, Any] = {}
    for path, p in space.items():
        if p.type == "float":
            out[path] = trial.suggest_float(path, p.low, p.high, log=p.log, step=p.step)
        elif p.type == "int":
            out[path] = trial.suggest_int(path, p.low, p.high, log=p.log, step=p.step)
        else:
            choices = [c if _scalar(c) else json.dumps(c) for c in p.choices]
            out[path] = trial.suggest_categorical(path, choices)
    return decode(space, out)


def space_change(space: Mapping[str, Any], trials: Any) -> str | None:
    """What keeps a study whose trials are `trials` from going on over `space`; None when nothing does.

    Optuna refuses a field's distribution that differs from the one its earlier trials drew from
    in kind (float, int, categorical), in scale (log or linear) or, for a categorical field, in
    its choices; a changed range, an added or a removed field it takes. Said here, before any
    trial starts, rather than by Optuna inside a trial (which would fail it).
    """
    import optuna.distributions as od

    seen: dict[str, Any] = {}
    for t in trials:
        for path, dist in t.distributions.items():
            seen.setdefault(path, dist)
    for path, p in space.items():
        old = seen.get(path)
        if old is None:
            continue
        if p.type == "categorical":
            new: Any = od.CategoricalDistribution([c if _scalar(c) else json.dumps(c) for c in p.choices])
        elif p.type == "float":
            new = od.FloatDistribution(p.low, p.high, log=p.log, step=p.step)
        else:
            new = od.IntDistribution(p.low, p.high, log=p.log, step=p.step)
        try:
            od.check_distribution_compatibility(old, new)
        except ValueError:
            return f"tune.space.{path}: {_described(old)} in the study, {_described(new)} in this spec"
    return None


def _described(dist: Any) -> str:
    import optuna.distributions as od

    if isinstance(dist, od.CategoricalDistribution):
        return "choices [" + ", ".join(str(c) for c in dist.choices) + "]"
    kind = "float" if isinstance(dist, od.FloatDistribution) else "int"
    return f"{kind} on a {'log' if dist.log else 'linear'} scale"


def decode(space: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's stored params as spec values (a JSON-text choice back to its list)."""
    out = dict(params)
    for path, p in space.items():
        if path in out and p.type == "categorical" and isinstance(out[path], str):
            for c in p.choices:
                if not _scalar(c) and json.dumps(c) == out[path]:
                    out[path] = copy.deepcopy(c)
    return out


def apply_params(spec: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the spec (as a dict) with each dotted field set to its value."""
    out = copy.deepcopy(dict(spec))
    for path, value in params.items():
        node = out
        parts = path.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = copy.deepcopy(value)
    return out


def spec_point(spec: Mapping[str, Any], space: Mapping[str, Any]) -> dict[str, Any]:
    """The spec's own values of the space's fields, as Optuna stores them (a list choice as its
    JSON text), for those the space holds: a float or int inside its range (above zero on a log
    scale, on the grid of a step), a value among the choices. Fields outside are left out (a
    trial started from this point samples them)."""
    out: dict[str, Any] = {}
    for path, p in space.items():
        node: Any = spec
        for part in path.split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        if p.type in ("float", "int"):
            number = isinstance(node, (int, float)) and not isinstance(node, bool)
            if p.type == "int" and number and float(node) != int(node):
                number = False
            if not number or not p.low <= node <= p.high or (p.log and node <= 0):
                continue
            if p.step is not None and abs((node - p.low) / p.step - round((node - p.low) / p.step)) > 1e-9:
                continue
            out[path] = int(node) if p.type == "int" else float(node)
        else:
            for c in p.choices:
                if c == node and type(c) is type(node):
                    out[path] = c if _scalar(c) else json.dumps(c)
                    break
    return out
