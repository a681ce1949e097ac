"""Personal data in the source, dealt with before anything is fitted (`data.protect`).

`protect` runs on the data as read, before its schema is inferred, so no later stage (the
vocabularies and category counts of the feature types, the text tokenizer, the drift
reference's sketches, the evidence's example texts, error messages naming a value, the
report, the logs) ever sees a value the detector (`trustforge.privacy`) found:

- `mask`: columns classified as wholly personal (a column of emails, of ID numbers, even one
  read as numbers) have every cell replaced by its type tag (`<EMAIL>`), whether or not the
  detector finds the entity in that particular cell; in the other text columns each detected
  span becomes its tag.
- `hash`: the same, with keyed hashes (`<EMAIL:3fa9c2e1b7d04a65>`, HMAC-SHA256 under the
  workspace's masking key) instead of tags, so one person is one token across rows, columns
  and files masked with the same key. A column classified as personal then holds one token per
  person: an identifier, useless as a feature, that would let the model look individuals up.
  So it stays in the data, hashed, but is left out of the model's features (`excluded` in the
  record; `data_for_schema` adds it to `data.drop`) unless `data.features` names it.
- `drop`: columns classified as personal are left out; spans in the other text columns are tagged.
- `fail`: any detected value is one error naming the columns that hold them (never a value).

A header that holds a detected value (a column named `jane.doe@example.com`) is renamed as
`trustforge scan` shows it, `<column 3: EMAIL>` (its position in the source, from 1, and the
types found), before anything else reads the data, so the schema, the package, the evidence,
the profile, the report and every message name it that way; under `fail` it is refused. The
record keeps, per renamed column, its header masked as a cell would be (`<EMAIL>`, or its keyed
hash under `hash`; `<EMAIL>#2` for the second such header of a type), so rows given to the
model later with the original header are matched to it (`headers`), never the header itself.

The package records what was done (`record`: the policy, the columns scanned, classified,
dropped and the counts masked, the renamed headers, never a value), and `protect_frame` / `protect_columns` treat
rows given to the trained model the same way before it reads them.

The target column is never scanned or masked: it is what the model predicts.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections import Counter
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Iterable, Mapping, NamedTuple

import numpy as np
import pandas as pd

from trustforge.data._raw import RawData
from trustforge.data._sources import did_you_mean
from trustforge.errors import DataError, SecurityError

if TYPE_CHECKING:
    from trustforge.spec import ProtectSpec

__all__ = [
    "protect",
    "renamed_in_spec",
    "protect_frame",
    "protect_columns",
    "needs_key",
    "key_id",
    "masking_key",
    "data_for_schema",
    "header_names",
    "mask_message",
]

log = logging.getLogger("trustforge.data")

_FIELD = "data.protect.pii"
# The purpose the workspace keyring derives the masking key for (`Keyring.derive_key`, HKDF of
# the workspace masking secret, which `keys rotate` never changes): the same key `trustforge mask
# --policy hash` uses, so tokens join across files, training data and key rotations.
PURPOSE = "pii-mask"


def masking_key(keyring: Any) -> bytes:
    """The workspace masking key (HKDF of its masking secret; `Keyring.derive_key`).

    Raises:
        SecurityError: the keyring holds no key-encryption key (the message says how to get one),
            or its masking secret cannot be opened.
    """
    return keyring.derive_key(PURPOSE)


def needs_key(policy: str | Mapping[str, Any] | None) -> bool:
    """True when `policy` (a spec's `data.protect.pii`, or a package's record) masks with a keyed hash."""
    if isinstance(policy, Mapping):
        return policy.get("masker") == "hash"
    return policy == "hash"


def key_id(key: bytes) -> str:
    """A short public fingerprint of a masking key: it tells keys apart, it does not reveal one."""
    return hmac.digest(key, b"trustforge masking key id", hashlib.sha256)[:8].hex()


def protect(
    raw: RawData, spec: "ProtectSpec", *, key: bytes | None = None, features: Iterable[Any] | None = None
) -> tuple[RawData, dict[str, Any] | None]:
    """`raw` with its personal data dealt with as `spec.pii` says, and the record of what was done.

    Args:
        raw: the data as read from its source.
        spec: the spec's `data.protect`.
        key: the workspace masking key (needed by `hash` only).
        features: the spec's `data.features` (a list or a mapping of columns): under `hash`, a
            personal column it names stays a feature; the others are `excluded`.

    Returns:
        (the protected data, the record the package keeps); `(raw, None)` when `pii` is off.

    Raises:
        DataError: `fail` and personal data was found (the columns are named, no value is);
            a column named in `data.protect.columns` is not in the data; the source holds no
            columns to scan (images or clips in folders, arrays).
        SecurityError: `hash` without a masking key.
    """
    if spec.pii == "off":
        return raw, None
    from trustforge.privacy import Masker, classify_columns, column_names

    if raw.frame is None:
        raise DataError(f"{raw.origin}: {_FIELD} {spec.pii!r} needs a table or text source (it scans columns); this source has none")
    if needs_key(spec.pii) and key is None:
        raise SecurityError(
            f"{_FIELD} hash needs the workspace masking key: run `trustforge keys init` (or set TRUSTFORGE_KEK) in the workspace that trains"
        )
    frame = raw.frame
    entities = list(spec.entities) if spec.entities is not None else None
    masker = _Policy(Masker("hash" if spec.pii == "hash" else "tag", key=key if spec.pii == "hash" else None, entities=entities), entities)
    shown = column_names(frame, masker.masker.types)  # a header holding a detected value as scan shows it
    columns = spec.columns
    if columns is not None:  # a personal header may be named as scan shows it (a run's own spec.yaml does)
        by_shown = {n: c for c, n in shown.items() if n != c}
        columns = [by_shown.get(c, c) if c not in frame.columns else c for c in columns]
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise DataError(
                f"{raw.origin}: no column {missing[0]!r} (data.protect.columns){did_you_mean(str(missing[0]), shown.values())}; "
                f"columns are: {_names(shown.values())}"
            )
    scanned = [c for c in (columns if columns is not None else frame.columns) if c != raw.target]
    if columns is not None and not scanned:  # the spec's own check misses a target the source names
        raise DataError(
            f"{raw.origin}: data.protect.columns names only the target {raw.target!r}, which is never scanned; "
            "name a column to scan, or null for every column but the target"
        )
    keys = _header_keys(scanned, masker)
    names = {c: shown[c] for c in keys}  # a personal header -> `<column 3: EMAIL>`, before anything reads the data
    if names:
        frame = frame.rename(columns=names)
        scanned = [names.get(c, c) for c in scanned]
    personal = {c: t for c, t in classify_columns(frame[scanned]).items() if entities is None or t in entities}
    personal = {c: personal[str(c)] for c in scanned if str(c) in personal}
    record: dict[str, Any] = {
        "policy": spec.pii,
        "masker": "hash" if spec.pii == "hash" else "tag",
        "entities": entities,
        "scanned": [str(c) for c in scanned],
        "personal": {str(c): t for c, t in personal.items()},
        "dropped": [],
        "masked": {},
    }
    if names:
        record["headers"] = {names[c]: k for c, k in keys.items()}
        by_tag: dict[str, list[str]] = {}
        for c, k in keys.items():
            by_tag.setdefault(k.split("#")[0], []).append(names[c])
        alike = [n for group in by_tag.values() if len(group) > 1 for n in group]
        if alike and spec.pii != "hash":  # a tag names the type only: `<EMAIL>`, `<EMAIL>#2`, ... follow the file's order
            log.warning(
                "data: %s: the headers of %s hold personal data of one type: rows given to the model later are matched to these "
                "columns by their order among such headers, not by the headers themselves (pii: hash matches them by header)",
                _FIELD,
                ", ".join(alike),
            )
    if spec.pii == "hash":
        record["key_id"] = key_id(key)  # type: ignore[arg-type]
        named = {str(names.get(c, c)) for c in features or ()}
        record["excluded"] = [str(c) for c in personal if str(c) not in named]
        if record["excluded"]:
            log.warning(
                "data: %s: %s hold one keyed token per person (an identifier, not a feature): kept hashed in the data, "
                "left out of the model's features; name a column in data.features to use it anyway",
                _FIELD,
                ", ".join(repr(c) for c in record["excluded"]),
            )
    if spec.pii == "drop":
        frame = frame.drop(columns=list(personal))
        record["dropped"] = [str(c) for c in personal]
        personal = {}
    out, counts = _apply(frame, [c for c in scanned if c in frame.columns], personal, masker)
    record["masked"] = counts
    if spec.pii == "fail":
        found = {**{n: {} for n in names.values()}, **{str(c): {t: None} for c, t in personal.items()}, **counts}
        if found:
            raise DataError(
                f"{raw.origin}: {_FIELD} is fail and personal data was found in "
                + ", ".join(f"{c!r} ({', '.join(sorted(found[c])) or 'its header'})" for c in found)
                + "; mask, hash or drop it (data.protect.pii: mask | hash | drop), or leave those columns out"
            )
        out = frame
    return replace(raw, frame=out), record


def data_for_schema(data: Any, record: Mapping[str, Any] | None, names: Mapping[Any, str] | None = None) -> Any:
    """The spec's data section as schema inference reads it after `protect`: the hashed personal
    columns `excluded` from the features are added to `data.drop`, and the columns `protect`
    dropped are no longer named there (they are gone from the data already). `names` (see
    `header_names`) maps the personal headers `data.drop` and `data.features` may name to the
    names `protect` gave their columns."""
    if not record:
        return data
    names = names or {}
    gone = set(record.get("dropped") or ())
    drop = [names.get(c, c) for c in data.drop if names.get(c, c) not in gone]
    drop += [c for c in record.get("excluded") or () if c not in drop]
    update: dict[str, Any] = {"drop": drop} if drop != list(data.drop) else {}
    features = data.features
    if names and isinstance(features, list):
        update["features"] = [names.get(c, c) for c in features]
    elif names and isinstance(features, dict):
        update["features"] = {names.get(c, c): v for c, v in features.items()}
    return data.model_copy(update=update) if update else data


def renamed_in_spec(spec: Any, renamed: Mapping[str, str]) -> Any:
    """`spec` with each personal header that `data.features`, `data.drop` or `data.protect.columns`
    names replaced by the name `protect` gave its column (`renamed`: `Prepared.renamed`), for what
    a run writes (its spec.yaml, the package's manifest): the header never leaves the user's own
    spec file. The copy reads the same data again: `protect` renames the header the same way, and
    these fields accept the new name."""
    if not renamed:
        return spec
    data = spec.data
    new = lambda c: renamed.get(c, c) if isinstance(c, str) else c  # noqa: E731
    update: dict[str, Any] = {"drop": [new(c) for c in data.drop]}
    if isinstance(data.features, list):
        update["features"] = [new(c) for c in data.features]
    elif isinstance(data.features, dict):
        update["features"] = {new(c): v for c, v in data.features.items()}
    if data.protect.columns is not None:
        update["protect"] = data.protect.model_copy(update={"columns": [new(c) for c in data.protect.columns]})
    return spec.model_copy(update={"data": data.model_copy(update=update)})


def header_names(columns: Iterable[Any], record: Mapping[str, Any] | None, key: bytes | None) -> dict[Any, str]:
    """Column -> the name `protect` gives it, for the columns among `columns` whose header holds
    personal data the trained model knows (`record`: the package's `pii` entry, its `headers`),
    matched by the header masked as training masked it. Others are left out.

    Raises:
        SecurityError: the headers were hashed and `key` is missing or another key.
    """
    if not record or not record.get("headers"):
        return {}
    by_key = {k: name for name, k in record["headers"].items()}
    keys = _header_keys(columns, _masker(record, key))
    return {c: by_key[k] for c, k in keys.items() if k in by_key}


def mask_message(message: str, record: Mapping[str, Any] | None) -> str:
    """An error message that may quote an input value, with each personal value the detector
    finds replaced by its type tag (`<EMAIL>`), when the model was trained with `data.protect`
    on (`record`: the package's `pii` entry); as it is otherwise."""
    if not record or not message:
        return message
    from trustforge.privacy import Masker

    entities = record.get("entities")
    return Masker("tag", entities=list(entities) if entities else None).mask_text(message)


def protect_frame(frame: pd.DataFrame, record: Mapping[str, Any] | None, key: bytes | None) -> pd.DataFrame:
    """Rows given to a trained model, treated as its training data was (`record`: the package's
    `pii` entry; None: returned as they are). Columns that training dropped are dropped."""
    if not record:
        return frame
    names = header_names(frame.columns, record, key)  # a personal header as training named its column
    if names:
        frame = frame.rename(columns=names)
    masker = _masker(record, key)
    gone = set(record.get("dropped") or ()) | set(record.get("excluded") or ())  # left out of training: not read
    dropped = [c for c in frame.columns if str(c) in gone]
    if dropped:
        frame = frame.drop(columns=dropped)
    personal = {c: record["personal"][str(c)] for c in frame.columns if str(c) in (record.get("personal") or {})}
    scanned = [c for c in frame.columns if str(c) in set(record.get("scanned") or ())]
    return _apply(frame, scanned, personal, masker)[0]


def protect_columns(columns: Mapping[str, Any], record: Mapping[str, Any] | None, key: bytes | None) -> Mapping[str, Any]:
    """`protect_frame` for inputs given as {column: values} (the server's path), column by column."""
    if not record:
        return columns
    masker = _masker(record, key)
    names = header_names(list(columns), record, key)  # a personal header as training named its column
    columns = {names.get(n, n): v for n, v in columns.items()}
    personal = record.get("personal") or {}
    scanned = set(record.get("scanned") or ())
    out = dict(columns)
    for name, values in columns.items():
        if str(name) in scanned:
            series = values if isinstance(values, pd.Series) else pd.Series(np.asarray(values, dtype=object) if np.ndim(values) else values)
            masked, _ = _column(series, personal.get(str(name)), masker)
            if masked is not None:
                out[name] = masked.to_numpy(dtype=object)
    return out


# ---------------------------------------------------------------------------- helpers


class _Policy(NamedTuple):
    """A masker and the entity types it looks for (None: all)."""

    masker: Any
    entities: list[str] | None


def _masker(record: Mapping[str, Any], key: bytes | None) -> Any:
    from trustforge.privacy import Masker

    if record.get("masker") == "hash":
        if key is None:
            raise SecurityError(
                "this model was trained on data masked with keyed hashes: it needs the masking key of the workspace that "
                "trained it (load it with that workspace's keyring, or set TRUSTFORGE_KEK)"
            )
        if record.get("key_id") and key_id(key) != record["key_id"]:
            raise SecurityError(
                "this model was trained on data hashed under another masking key (another workspace's masking secret, or "
                "one replaced since, e.g. by `keys init --force`); its inputs would not match what it learned"
            )
        return _Policy(Masker("hash", key=key, entities=record.get("entities")), record.get("entities"))
    return _Policy(Masker("tag", entities=record.get("entities")), record.get("entities"))


def _header_keys(columns: Iterable[Any], policy: Any) -> dict[Any, str]:
    """Column -> what matches its header across files, for the headers holding a detected value:
    the header masked as a cell is (`<EMAIL>`, or its keyed hash), `#2`, `#3`, ... added to the
    second and later of one mask, in column order."""
    keys: dict[Any, str] = {}
    seen: Counter[str] = Counter()
    for col in columns:
        masked = policy.masker.mask_text(col) if isinstance(col, str) else col
        if masked != col:
            seen[masked] += 1
            keys[col] = masked if seen[masked] == 1 else f"{masked}#{seen[masked]}"
    return keys


def _apply(
    frame: pd.DataFrame, scanned: Iterable[Any], personal: Mapping[Any, str], masker: Any
) -> tuple[pd.DataFrame, dict[str, dict[str, int]]]:
    """`frame` with every scanned column masked (a copy when anything changed) and the counts per column."""
    out, counts = None, {}
    for col in scanned:
        masked, found = _column(frame[col], personal.get(col), masker)
        if found:
            counts[str(col)] = found
        if masked is not None:
            if out is None:
                out = frame.copy()
            out[col] = masked
    return (frame if out is None else out), counts


def _column(series: pd.Series, kind: str | None, masker: Any) -> tuple[pd.Series | None, dict[str, int]]:
    """(the column masked, or None when nothing in it changed; entity type -> cells or spans masked).

    A personal column (`kind`): every present cell becomes the replacement of its type, so a
    cell the detector would miss is replaced too; numbers (ID or phone numbers read as
    numbers) are read as their digits. Another column: the spans the detector finds in its
    strings; cells that are not strings (numbers, file contents) are left as they are.
    """
    if kind is not None:
        present = series.notna().to_numpy()
        if not present.any():
            return None, {}
        values = series.map(_digits_or_text)
        mapping = {v: masker.masker.replacement(kind, v) for v in pd.unique(values[present])}
        masked = values.map(mapping).astype(object)
        masked[~present] = None
        return masked, {kind: int(present.sum())}
    if series.dtype.kind not in "OSU" and not isinstance(series.dtype, pd.StringDtype):
        return None, {}
    found: Counter[str] = Counter()
    mapping: dict[str, str] = {}
    is_text = series.map(lambda v: isinstance(v, str)).to_numpy(dtype=bool)
    if not is_text.any():
        return None, {}
    from trustforge.privacy import scan_text

    for value, n in series[is_text].value_counts().items():
        spans = scan_text(value, masker.entities)
        if not spans:
            continue
        parts, pos = [], 0
        for e in spans:
            parts += [value[pos : e.start], masker.masker.replacement(e.type, e.text)]
            pos = e.end
            found[e.type] += int(n)
        mapping[value] = "".join(parts) + value[pos:]
    if not mapping:
        return None, {}
    masked = series.map(lambda v: mapping.get(v, v) if isinstance(v, str) else v).astype(object)
    return masked, dict(sorted(found.items()))


def _digits_or_text(v: Any) -> Any:
    """A cell of a personal column as the detector reads it: whole numbers as their digits."""
    if isinstance(v, (bool, np.bool_)):
        return str(v)
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return v if isinstance(v, str) else str(v)


def _names(columns: Iterable[Any]) -> str:
    names = [str(c) for c in columns]
    return ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
