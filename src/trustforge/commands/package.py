"""`trustforge package ...`: verify, encrypt, decrypt and export packages.

`export` of a registered version (models:/...) is a package write: it needs the `export` right
(trainer, admin) and is audited, refused or done. encrypt, decrypt and export of a package folder
the user names write a package copy with the workspace's keys (a sealed copy, a plaintext copy,
a signed artefact), so they are package writes too:
* acting as the local workspace admin (no `TRUSTFORGE_TOKEN`), whoever holds the keys, they
  need no role, as before;
* acting with a token, they need the same `export` right and are audited, refused or done (a
  probe decrypted and exported with a viewer's token, and nothing was recorded);
* a folder inside the registry's package store is refused for everyone: registered versions are
  reached through their model URI, with its checks and its audit entry (`package export
  models:/NAME/3`), and are decrypted in memory only, never into a plaintext copy.
`verify` only reads, and needs keys but no role.
Library errors (`TrustForgeError`) propagate to the main command, which prints them as one line.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import typer

app = typer.Typer(help="Verify, encrypt, decrypt and export model packages.", no_args_is_help=True, add_completion=False)


def _keyring(required: bool = True):
    from trustforge.secure import Keyring
    from trustforge.settings import Settings

    settings = Settings.from_env()
    if not required and not (settings.keys_dir / "signing.key").exists():
        return None
    return Keyring.load(settings.keys_dir, kek_b64=settings.kek)


@contextmanager
def _package_write(path: Path, op: str) -> Iterator[None]:
    """Run a package write on the folder `path` as the acting principal (see the module docstring)."""
    from trustforge import secure
    from trustforge._shown import recorded
    from trustforge.errors import SecurityError, TrustForgeError
    from trustforge.settings import Settings

    settings = Settings.from_env()
    store = Path(settings.artifacts or settings.home / "artifacts").resolve()
    if path.resolve().is_relative_to(store):
        raise SecurityError(
            f"{path.name}: a registered version's package in the registry's store; "
            f"name it by its model URI (`trustforge package export models:/NAME/VERSION`), which checks your role and is audited"
            + ("; registered versions are decrypted in memory only" if op == "decrypt" else "")
        )
    if settings.token is None:
        yield
        return
    from trustforge.registry import Registry

    with Registry(settings) as registry:  # authenticates the token (refusals are audited)
        obj = f"package:{path.name}"
        secure.require(registry.principal, "export", obj, registry.audit)
        try:
            yield
        except TrustForgeError as exc:
            registry.audit.append(registry.principal.name, "export", obj, "error", {"op": op, "error": recorded(exc, home=settings.home)})
            raise
        registry.audit.append(registry.principal.name, "export", obj, "ok", {"op": op})


def _free(out: Path | None, default: Path) -> Path:
    """The folder to write: `--out`, or `default` where it is not given; refused (a usage error)
    where it exists or, given, its parent folder does not."""
    from trustforge.commands import output_folder

    dest = out or default
    output_folder(dest, "--out", default=out is None)
    return dest


@app.command()
def verify(
    path: Path = typer.Argument(..., help="a package folder, plain or sealed"),
    public_key: Optional[Path] = typer.Option(None, "--public-key", help="a PEM public key to verify a package signed elsewhere"),
) -> None:
    """Check the signature, then every file's SHA-256, then the manifest (sealed: in memory)."""
    from trustforge.package import read_package
    from trustforge.secure import is_sealed

    keyring = _keyring(required=public_key is None or is_sealed(path))
    pkg = read_package(path, keyring=keyring, public_key=public_key)
    m = pkg.manifest
    kind = "sealed package" if is_sealed(path) else "package"
    typer.echo(
        f"{path}: {kind} {m.get('name')!s} verified (signature and {len(m['files']) + 1} file digests, package id {m['package_id']})"
    )
    if keyring is not None:
        _verify_exports(path, m, keyring)


def _verify_exports(path: Path, manifest: dict, keyring) -> None:
    """Verify each export beside the package (bound to this package's digest) and show its evidence."""
    import hashlib

    from trustforge.package import encode_manifest, find_exports, read_export

    digest = hashlib.sha256(encode_manifest(manifest)).hexdigest()
    for folder in find_exports(path):
        evidence, _ = read_export(folder, keyring, digest)
        typer.echo(f"  {folder.name}: export verified; {_evidence_line(evidence)}")


def _rows_checked(check: dict) -> str:
    """`114 test rows`, or `12 rows of lab.csv` for rows given with --data (not the test split)."""
    rows, note = check.get("rows"), str(check.get("data") or "")
    if note.startswith("rows of ") and note.endswith(" (--data)"):
        return f"{rows} row{'s' if rows != 1 else ''} of {note.removeprefix('rows of ').removesuffix(' (--data)')}"
    return f"{rows} test rows"


def _evidence_line(ev: dict) -> str:
    check, speed = ev.get("check") or {}, ev.get("speed") or {}
    parts = [f"max difference {check.get('max_difference', float('nan')):.2g} from eager on {_rows_checked(check)}"]
    if check.get("accuracy_change_points") is not None:
        parts.append(f"accuracy change {check['accuracy_change_points']:+.2f} points")
    elif check.get("headline_change") is not None:
        parts.append(f"{check.get('headline')} change {check['headline_change']:+.4g}")
    for b in ("batch_1", "batch_256"):
        if (speed.get(b) or {}).get("speedup"):
            parts.append(f"speed-up x{speed[b]['speedup']:.2f} at {b.replace('_', ' ')}")
    return "; ".join(parts)


def _check_format(value: str) -> str:
    """--format, checked while the command line is parsed: a bad value is a usage error (exit 2).
    In any case (`ONNX`), as every choice of the command line."""
    from trustforge.package import EXPORT_FORMATS

    chosen = value.strip().lower()
    if chosen not in EXPORT_FORMATS:
        raise typer.BadParameter(f"must be one of {', '.join(EXPORT_FORMATS)}; got {value!r}")
    return chosen


def _check_quantize(value: Optional[str]) -> Optional[str]:
    """--quantize, checked while parsing (exit 2 naming the option), in any case."""
    from trustforge.package import QUANTIZATIONS

    chosen = value.strip().lower() if value is not None else None
    if chosen is not None and chosen not in QUANTIZATIONS:
        raise typer.BadParameter(f"must be one of {', '.join(QUANTIZATIONS)}; got {value!r}")
    return chosen


def _check_max_drop(value: float) -> float:
    """--max-accuracy-drop, checked while parsing: points of test accuracy, finite, in [0, 100].
    NaN would turn the int8 guard off (no comparison with it is true); a negative drop would
    refuse every export only after it was made."""
    import math

    if not (math.isfinite(value) and 0.0 <= value <= 100.0):
        raise typer.BadParameter(f"must be points of test accuracy in [0, 100]; got {value!r}")
    return value


@app.command()
def export(
    model_uri: str = typer.Argument(..., metavar="MODEL_URI", help="a model URI (models:/NAME@alias, models:/NAME/3) or a package folder"),
    fmt: str = typer.Option(..., "--format", callback=_check_format, help="onnx or torchscript"),
    quantize: Optional[str] = typer.Option(
        None, "--quantize", callback=_check_quantize, help="int8: dynamic int8 quantisation of the linear layers"
    ),
    data: Optional[Path] = typer.Option(
        None,
        "--data",
        help="labelled test rows (CSV/Parquet, image folder); default: the package's test split, re-prepared from its "
        "spec and used only if the data set's digest matches the package's",
    ),
    max_drop: float = typer.Option(
        0.5,
        "--max-accuracy-drop",
        callback=_check_max_drop,
        help="int8: refuse if test accuracy falls by more points than this (0 to 100)",
    ),
    speed: bool = typer.Option(True, "--speed/--no-speed", help="measure the speed-up at batch 1 and 256 (one thread)"),
) -> None:
    """Write a signed ONNX or TorchScript artefact beside the package, checked against the eager model on the test split.

    The artefact folder (PACKAGE.onnx, PACKAGE.onnx-int8, PACKAGE.torchscript, ...) holds the
    model file, manifest.json (the evidence: differences, metrics, speed) and model.sig; a
    sealed package's artefact is sealed too. `serve --backend onnx` uses PACKAGE.onnx-int8,
    else PACKAGE.onnx, when one verifies.
    """
    import hashlib

    from trustforge.package import Model, encode_manifest, export_model, export_path, split_for_export
    from trustforge.settings import Settings

    settings = Settings.from_env()

    def run(model, package: Path, sealed: bool, keyring) -> tuple[Path, dict]:
        raw, note = split_for_export(model, data, cache_dir=settings.cache_dir)
        dest = export_path(package, fmt, quantize)
        digest = hashlib.sha256(encode_manifest(model.manifest)).hexdigest()
        evidence = export_model(
            model,
            raw,
            dest,
            keyring,
            fmt=fmt,
            quantize=quantize,
            package_digest=digest,
            seal=sealed,
            data_note=note,
            max_drop=max_drop,
            speed=speed,
        )
        return dest, evidence

    if model_uri.startswith("models:/"):
        from trustforge import secure
        from trustforge._shown import recorded
        from trustforge.errors import TrustForgeError
        from trustforge.registry import Registry

        with Registry(settings) as registry:
            mv = registry.get(model_uri)  # the read right, checked and audited
            secure.require(registry.principal, "export", mv.uri, registry.audit)
            details = {"format": fmt, "quantize": quantize}
            try:
                model = registry.load_model(mv.uri)
                dest, evidence = run(model, mv.path, mv.encrypted, registry.keyring)
            except TrustForgeError as exc:
                error = recorded(exc, home=settings.home)  # no cell value, no local path: the log is kept for good
                registry.audit.append(registry.principal.name, "export", mv.uri, "error", {**details, "error": error})
                raise
            check = evidence["check"]
            registry.audit.append(
                registry.principal.name,
                "export",
                mv.uri,
                "ok",
                {
                    **details,
                    "artefact": dest.name,
                    "max_difference": check["max_difference"],
                    "accuracy_change_points": check["accuracy_change_points"],
                },
            )
            where = mv.uri
    else:
        path = Path(model_uri)
        from trustforge.secure import is_sealed

        with _package_write(path, f"export {fmt}" + (f" {quantize}" if quantize else "")):
            keyring = _keyring()
            dest, evidence = run(Model.load(path, keyring=keyring), path, is_sealed(path), keyring)
        where = str(path)
    sealed = " (sealed)" if evidence["source"]["sealed"] else ""
    typer.echo(f"exported {where} to {dest}{sealed}: {_evidence_line(evidence)}")


@app.command()
def encrypt(
    path: Path = typer.Argument(..., help="a signed package folder"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="the sealed folder to write (default: PATH.sealed)"),
) -> None:
    """Write an encrypted copy (AES-256-GCM under a new data key wrapped by the workspace KEK).

    `trustforge keys rotate` re-wraps such a copy only when its folder is named with --include.
    """
    from trustforge.secure import seal_package

    dest = _free(out, path.with_name(path.name + ".sealed"))
    with _package_write(path, "encrypt"):
        seal_package(path, dest, _keyring())
    typer.echo(f"sealed {path} into {dest}")


@app.command()
def decrypt(
    path: Path = typer.Argument(..., help="a sealed package folder"),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="the plain folder to write (default: PATH without .sealed, or PATH.plain)"
    ),
) -> None:
    """Verify a sealed package in memory, then write its plain (signed) package folder."""
    from trustforge.secure import unseal_package

    default = path.with_name(path.name[: -len(".sealed")] if path.name.endswith(".sealed") else path.name + ".plain")
    dest = _free(out, default)
    with _package_write(path, "decrypt"):
        unseal_package(path, dest, _keyring())
    typer.echo(f"decrypted {path} into {dest} (plaintext on disk: delete it when done)")
