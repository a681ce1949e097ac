"""Inference artefacts: a package's network exported to ONNX or TorchScript, checked, measured and signed.

`export_model` writes, beside a package folder `P`, the folder `P.onnx`, `P.onnx-int8`,
`P.torchscript` or `P.torchscript-int8`:

    model.onnx | model.torchscript   the exported network (no preprocessing: that stays the package's)
    manifest.json                    the evidence: which package (id and manifest SHA-256) it was
                                     exported from, the check against the eager model on the test
                                     split (max difference, metrics of both, the accuracy change),
                                     the speed at batch 1 and 256, versions; and both files' SHA-256
    model.sig                        the workspace's signature over both files' SHA-256 (the same
                                     OpenSSF model-signing format as the package's)

So a swapped or edited model file fails its digest, an artefact of another package fails the
package digest it is bound to, and an unsigned one fails the signature: `read_export` refuses
all three with one `IntegrityError` naming the file. An artefact of a sealed (encrypted)
package is sealed the same way (AES-256-GCM under a new data key wrapped by the workspace KEK),
so its weights are never at rest in plaintext; it is decrypted in memory to be used.

Checks: ONNX and TorchScript outputs must equal the eager model's to `TOLERANCE` on every row
of the test split (else nothing is written). An int8 artefact (dynamic quantisation: ONNX
Runtime's `quantize_dynamic` for ONNX, `torch.ao` for TorchScript; weights int8, activations
quantised per batch) is not expected to be that close: its metric change on the test split is
recorded and it is refused if test accuracy falls by more than `max_drop` points.

No artefact names a path of the machine that exported it: the exporters' records of the Python
source each operation came from (the ONNX nodes' stack traces, TorchScript's `*.debug_pkl`) are
left out, as are the example rows tracing would store in a TorchScript archive.

TorchScript files are archives whose loading is pickle-like: we only ever `torch.jit.load` the
bytes we have just written, in the same process, to check them; a TorchScript file on disk is
for other runtimes (Triton, MLServer, C++), never loaded back by TrustForge.

onnx, onnxruntime and onnxscript are imported inside the functions that need them.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import inspect
import io
import json
import logging
import math
import os
import re
import shutil
import statistics
import tempfile
import time
import uuid
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from trustforge._extras import require
from trustforge._fs import atomic_folder, fsync_path, write_private_bytes
from trustforge._shown import no_local_paths
from trustforge.data import SOURCES, Prepared, RawData, prepare, split_settings
from trustforge.errors import DataError, ModelError, TrustForgeError
from trustforge.package._artefact import EXPORT_FORMAT, EXPORT_FORMATS, EXPORT_VERSION, FILES, MANIFEST, QUANTIZATIONS, export_temp_path
from trustforge.package._model import Model
from trustforge.secure import SIGNATURE_FILE, Keyring, seal_package, sign_digests
from trustforge.spec import TaskSpec

__all__ = [
    "EXPORT_TOLERANCE",
    "MIN_CHECK_ROWS",
    "ONNX_OPSET",
    "OnnxModule",
    "export_model",
    "measure_speed",
    "onnx_bytes",
    "spec_prepared",
    "spec_test_split",
    "split_for_export",
]

log = logging.getLogger("trustforge.package")

EXPORT_TOLERANCE = 1e-4
ONNX_OPSET = 18
MAX_DROP_POINTS = 0.5
# The fewest rows given with --data that an export is checked on, as `attack --rows` asks: on
# fewer, "equal to eager" and the accuracy change say next to nothing about the artefact.
MIN_CHECK_ROWS = 10
_SPEED_BATCHES = (1, 256)
# Terminal colour codes (ESC [ ... m) and where the ONNX exporter's advice starts in its messages.
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_EXPORTER_ADVICE = re.compile(r"\s*(?:This is step \d+/\d+\b|Next steps:)")
# ONNX node metadata that holds the Python stack of the traced code (local source paths).
_ONNX_STACK_TRACE = "pkg.torch.onnx.stack_trace"


# ---------------------------------------------------------------------------- exporters


def onnx_bytes(module: torch.nn.Module, example: tuple[torch.Tensor, ...], *, kind: str, hint: str = "") -> bytes:
    """The ONNX bytes of `module` (inputs `input_0`..., output `output`, batch axis dynamic).

    The one ONNX exporter of the project (the server's on-first-use cache calls it too).

    Raises:
        ModelError: the exporter cannot handle this model kind (named), with `hint` appended.
    """
    require("export", "ONNX export")
    names = [f"input_{i}" for i in range(len(example))]
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    dynamic = _dynamic_batch(module, len(example), batch)
    sink = io.StringIO()
    # torch.fx too: its symbolic-shape warnings ("Unable to find user code ...") reached the terminal.
    quiet = [logging.getLogger(n) for n in ("torch.onnx", "torch._export", "torch.export", "onnxscript", "torch._dynamo", "torch.fx")]
    levels = [lg.level for lg in quiet]
    try:
        for lg in quiet:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module,
                example,
                None,
                input_names=names,
                output_names=["output"],
                dynamic_shapes=dynamic,
                dynamo=True,
                opset_version=ONNX_OPSET,
                verbose=False,
            )
            proto = program.model_proto
    except Exception as exc:  # noqa: BLE001 - the exporter raises many types; all mean "this kind cannot export"
        log.debug("ONNX export of model kind %r failed: %s", kind, _plain(str(exc)))  # the exporter's whole report
        detail = _first_sentence(str(exc))
        cause = _known_cause(module, kind) or (f"{exc.__class__.__name__}: {detail}" if detail else exc.__class__.__name__)
        raise ModelError(f"model kind {kind!r} cannot be exported to ONNX ({cause}){hint}") from None
    finally:
        for lg, level in zip(quiet, levels):
            lg.setLevel(level)
    _drop_stack_traces(proto)
    return proto.SerializeToString()


def _drop_stack_traces(proto: Any) -> None:
    """Remove the exporter's per-node Python stack traces (`pkg.torch.onnx.stack_trace`) from an
    ONNX model, in every graph, subgraph and function: they name the installed source files by
    their absolute local path (`File "/home/.../trustforge/models/tabm.py", line 164, in forward`),
    which must not leave the machine inside an artefact. The other node metadata (module names,
    name scopes) holds no paths and stays."""
    graphs = [proto.graph, *proto.functions]
    while graphs:
        graph = graphs.pop()
        for node in graph.node:
            kept = [p for p in node.metadata_props if p.key != _ONNX_STACK_TRACE]
            del node.metadata_props[:]
            node.metadata_props.extend(kept)
            for attr in node.attribute:
                graphs.extend([attr.g] if attr.HasField("g") else [])
                graphs.extend(attr.graphs)


def _known_cause(module: torch.nn.Module, kind: str) -> str | None:
    """Why a kind the README lists as not exportable fails, in words (None: not one of those)."""
    if kind == "rnn" and getattr(module, "token_embedding", None) is not None:
        return "an rnn over text packs its sequences by length, which the exporter cannot follow"
    return None


def _plain(text: str) -> str:
    """`text` without terminal colour codes (the ONNX exporter colours its report)."""
    return _ANSI.sub("", text)


def _first_sentence(text: str) -> str:
    """What an exporter's error says went wrong, on one line: its first line without colour codes,
    and without the exporter's own step counter and advice ("This is step 3/3 of exporting the
    model to ONNX. Next steps: ..."), which would be cut off mid-list and is not ours to give."""
    first = _plain(text).strip().split("\n", 1)[0]
    first = _EXPORTER_ADVICE.split(first, 1)[0].strip()
    return first if len(first) <= 200 else first[:197] + "..."


def _dynamic_batch(module: torch.nn.Module, n_inputs: int, batch: Any) -> tuple:
    """The batch axis of every input, shaped like `forward`'s arguments: inputs taken by a
    `*args` parameter (a table's token-id tensors, one per text column) form one tuple."""
    params = list(inspect.signature(module.forward).parameters.values())
    named = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if n_inputs <= len(named) or not any(p.kind == p.VAR_POSITIONAL for p in params):
        return tuple({0: batch} for _ in range(n_inputs))
    return tuple({0: batch} for _ in named) + (tuple({0: batch} for _ in range(n_inputs - len(named))),)


def _quantize_onnx(blob: bytes) -> bytes:
    """ONNX Runtime's dynamic int8 quantisation of MatMul/Gemm weights (activations quantised per batch).

    Convolutions stay float: ONNX Runtime's dynamic ConvInteger has no fast CPU kernel and
    would make a CNN slower, not faster.
    """
    require("export", "int8 quantisation of an ONNX export")
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load_from_string(blob)
    # quantize_dynamic writes a file: a private (0700) temporary folder, removed at once.
    with tempfile.TemporaryDirectory(prefix="trustforge-int8-") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = Path(tmp) / "model.onnx"
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # its advice to pre-process (shape inference) concerns static quantisation
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                quantize_dynamic(model, out, op_types_to_quantize=["MatMul", "Gemm"], weight_type=QuantType.QInt8)
        finally:
            root.setLevel(level)
        return out.read_bytes()


def _torchscript_bytes(module: torch.nn.Module, example: tuple[torch.Tensor, ...], quantize: str | None, kind: str) -> bytes:
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            if quantize:
                # Linear layers only, as for ONNX; copied, so the eager model stays float.
                module = _quantized_linears(copy.deepcopy(module), example)
            # Without the example rows (test rows) that tracing would otherwise store in the archive.
            traced = torch.jit.trace(module, example, check_trace=False, _store_inputs=False)
            buf = io.BytesIO()
            torch.jit.save(traced, buf)
            return _without_debug_records(buf.getvalue())
    except Exception as exc:  # noqa: BLE001 - tracing raises many types; all mean "this kind cannot export"
        raise ModelError(f"model kind {kind!r} cannot be exported to TorchScript ({exc.__class__.__name__}: {str(exc)[:200]})") from None


def _quantized_linears(module: torch.nn.Module, example: tuple[torch.Tensor, ...]) -> torch.nn.Module:
    """`module` with int8 dynamic quantisation of the Linear layers its forward pass calls as
    layers. A layer whose weight its parent reads itself (TabM's weight-sharing members fold
    their adapters into `linear.weight`) stays float: quantised, it has no weight tensor to read."""
    called: set[str] = set()
    names = {m: n for n, m in module.named_modules() if isinstance(m, torch.nn.Linear)}
    hooks = [m.register_forward_hook(lambda m, _i, _o: called.add(names[m])) for m in names]
    try:
        module.eval()
        module(*example)
    finally:
        for h in hooks:
            h.remove()
    spec = {name: torch.ao.quantization.default_dynamic_qconfig for name in called}
    return torch.ao.quantization.quantize_dynamic(module, spec, dtype=torch.qint8) if spec else module


def _without_debug_records(blob: bytes) -> bytes:
    """A TorchScript archive without its `code/*.debug_pkl` records.

    Those map the generated code back to the Python stack it was traced from, naming the
    installed source files by their absolute local path; torch has no switch to leave them out
    and loads an archive without them (they only enrich error messages). The archive is
    rewritten record by record with torch's own archive writer, which keeps the records'
    alignment; the generated code (`code/*.py`) names modules, not files, and is kept as it is.
    """
    reader = torch._C.PyTorchFileReader(io.BytesIO(blob))
    out = io.BytesIO()
    writer = torch._C.PyTorchFileWriter(out)
    for name in reader.get_all_records():
        if not name.endswith(".debug_pkl"):
            data = reader.get_record(name)
            writer.write_record(name, data, len(data))
    writer.write_end_of_file()
    return out.getvalue()


class OnnxModule:
    """An ONNX Runtime session (one thread by default) called like the torch module it replaces."""

    def __init__(self, blob: bytes, threads: int = 1):
        require("export", "running an ONNX model (serve --backend onnx, package export)")
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(blob, options, providers=["CPUExecutionProvider"])
        self._names = {i.name for i in self.session.get_inputs()}

    def eval(self) -> "OnnxModule":
        return self

    def __call__(self, *tensors: torch.Tensor) -> torch.Tensor:
        # The exporter drops inputs the network never reads (an empty categorical matrix).
        feeds = {f"input_{i}": t.detach().cpu().numpy() for i, t in enumerate(tensors) if f"input_{i}" in self._names}
        return torch.from_numpy(self.session.run(None, feeds)[0])


# ---------------------------------------------------------------------------- the test split


def split_for_export(model: Model, data: Path | None = None, *, cache_dir: Path | None = None) -> tuple[RawData, str]:
    """The labelled rows an export is checked on, and a note of where they came from.

    With `data` (a labelled CSV/Parquet file or image folder), those rows. Otherwise the test
    split is re-prepared from the package's own normalised spec (same source, split and seed)
    and used only if the data set's digest equals the one the package recorded at training
    (`lineage.dataset_digest`): the same rows the package's metrics were measured on.

    Raises:
        DataError: the spec's source cannot be read here (a file source keeps only its file
            name in the package) or now holds other data; both say to give `--data FILE`; or
            `data` holds fewer than `MIN_CHECK_ROWS` rows.
    """
    if data is not None:
        raw = model.read_input(data)
        if len(raw) < MIN_CHECK_ROWS:
            raise DataError(
                f"--data {Path(data).name} holds {len(raw)} row{'s' if len(raw) != 1 else ''}; an export is checked on "
                f"at least {MIN_CHECK_ROWS} labelled rows (the package's test split when --data is not given)"
            )
        return raw, f"rows of {Path(data).name} (--data)"
    source = str(getattr(model.spec.data, "source", "") or "")
    try:
        prepared = prepare(model.spec, cache_dir=cache_dir, key=model.pii_key)
    except TrustForgeError as exc:
        # Why, without a local path (a reader may name the file it resolved); where a file is looked for.
        scheme = SOURCES.get(source.partition(":")[0].strip())
        where = "; a package keeps its data file's name only, read from the working folder" if scheme and scheme.is_path else ""
        raise DataError(
            f"the test split of {model.name} cannot be re-prepared from its spec's source {source!r} "
            f"({no_local_paths(str(exc))}{where}); give the labelled test rows with --data FILE"
        ) from None
    if not _trained_on(model, prepared):
        raise DataError(
            f"the data of {source!r} is not the data {model.name} was trained on (dataset digest differs from the "
            "package's lineage); give the labelled test rows with --data FILE"
        )
    return (
        prepared.test_raw,
        f"test split of {source} re-prepared from the package's spec (dataset digest {prepared.data_digest[:12]} matches)",
    )


def _trained_on(model: Model, prepared: Prepared) -> bool:
    """Whether `prepared` is the data set `model` was trained on: its digest equals the package's
    `lineage.dataset_digest` (False when the package recorded none)."""
    expected = (model.manifest.get("lineage") or {}).get("dataset_digest")
    return bool(expected) and prepared.data_digest == expected


def spec_test_split(model: Model, spec: TaskSpec, *, where: str = "the spec", cache_dir: Path | None = None) -> RawData:
    """The test split of `spec`'s data, to evaluate `model` on (`trustforge evaluate MODEL SPEC`):
    `spec_prepared`'s test rows."""
    return spec_prepared(model, spec, where=where, cache_dir=cache_dir).test_raw


def spec_prepared(model: Model, spec: TaskSpec, *, where: str = "the spec", cache_dir: Path | None = None) -> Prepared:
    """`spec`'s data prepared, for its test split to score `model` on (`trustforge evaluate MODEL
    SPEC`, `trustforge attack MODEL --data SPEC`).

    The test split of another data set is used as it is. The data set the package was trained
    on (same digest, as `split_for_export` checks) must be split as the package's training split
    it (`data.split_settings`: fractions, stratification, `train.seed`, ...): split any other way,
    its test split would hold rows the model was trained on and its score would overstate the model.

    Args:
        where: names the spec in messages (its file name).

    Raises:
        DataError: the training data set split otherwise (the differing fields are named), or the
            data cannot be read (`prepare`'s errors).
    """
    prepared = prepare(spec, cache_dir=cache_dir, key=model.pii_key)
    if _trained_on(model, prepared):
        ours, theirs = split_settings(spec), split_settings(model.spec)
        differ = [
            f"{name} {_shown(ours.get(name))} (the package's: {_shown(theirs.get(name))})"
            for name in theirs
            if ours.get(name) != theirs.get(name)
        ]
        if differ:
            raise DataError(
                f"{where}: {'; '.join(differ)}: its data is the data set {model.name} was trained on (dataset digest "
                f"{prepared.data_digest[:12]} matches) but split differently, so its test split would hold rows the model "
                "was trained on; use the package's split settings or held-out labelled rows (a CSV/Parquet file)"
            )
    return prepared


def _shown(value: Any) -> str:
    if value is None:  # a field one side leaves out ("rating (the package's: not set)", not "None")
        return "not set"
    return (
        json.dumps(value, sort_keys=True)
        if isinstance(value, (dict, list))
        else str(value).lower()
        if isinstance(value, bool)
        else str(value)
    )


# ---------------------------------------------------------------------------- export


def export_model(
    model: Model,
    test: RawData,
    dest: Path,
    keyring: Keyring,
    *,
    fmt: str,
    quantize: str | None = None,
    package_digest: str,
    seal: bool = False,
    data_note: str = "",
    max_drop: float = MAX_DROP_POINTS,
    speed: bool = True,
    repeats: int = 5,
) -> dict[str, Any]:
    """Export `model`'s network, check it against the eager model on `test`, measure it, write it signed.

    Args:
        model: a model loaded from a verified package.
        test: the labelled test split (checked raw data, as `Model.read_input` returns it).
        dest: the artefact folder to write (`export_path`); an existing one is replaced.
        keyring: signs the artefact (and seals it when `seal`).
        fmt: "onnx" or "torchscript"; quantize: None or "int8".
        package_digest: SHA-256 of the package's verified manifest.json (the artefact is bound to it).
        seal: encrypt the artefact (the package is sealed).
        data_note: how the test split was obtained (recorded in the evidence).
        max_drop: the most test accuracy may fall, in points, for an int8 artefact (classification).
        speed: measure the speed-up at batch 1 and 256 (median of `repeats` rounds, one thread).

    Returns:
        The artefact's manifest (its evidence).

    Raises:
        ModelError: the kind cannot be exported, the export differs from eager beyond
            `EXPORT_TOLERANCE`, or int8 costs more than `max_drop` points; nothing is written.
        DataError: an unknown format or quantisation, or an unlabelled or empty test split.
    """
    if fmt not in EXPORT_FORMATS:
        raise DataError(f"--format must be one of {', '.join(EXPORT_FORMATS)}; got {fmt!r}")
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise DataError(f"--quantize must be one of {', '.join(QUANTIZATIONS)}; got {quantize!r}")
    if not (isinstance(max_drop, (int, float)) and math.isfinite(max_drop) and 0 <= max_drop <= 100):
        # NaN would turn the int8 guard off: no comparison with it is true.
        raise DataError(f"--max-accuracy-drop must be points of test accuracy in [0, 100]; got {max_drop!r}")
    kind = str(getattr(model.spec.model, "kind", "unknown"))
    if not model.task.row_outputs:
        raise ModelError(f"model kind {kind!r} for task {model.spec.task!r}: export covers models with one output row per input row")
    inputs = tuple(model.preprocessor.encode_inputs(test))
    n = len(inputs[0]) if inputs else 0
    if n == 0:
        raise DataError("the test split is empty; nothing to check the export against")
    example = tuple(t[: min(4, n)] for t in inputs)
    module = model.module.eval()
    if fmt == "onnx":
        blob = onnx_bytes(module, example, kind=kind)
        if quantize:
            blob = _quantize_onnx(blob)
        runner: Callable[..., torch.Tensor] = OnnxModule(blob)
    else:
        blob = _torchscript_bytes(module, example, quantize, kind)
        # Only the bytes written just above, in this process: loading TorchScript is pickle-like.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated for torch.export; still what Triton loads
            runner = torch.jit.load(io.BytesIO(blob)).eval()
    exported = Model(model.spec, model.preprocessor, runner, model.manifest, model.path)  # type: ignore[arg-type]
    exported.pii_key = model.pii_key
    label = f"{fmt}{'-' + quantize if quantize else ''}"
    try:
        with torch.no_grad():
            diff = _max_difference(model.forward(inputs), exported.forward(inputs))
    except Exception as exc:  # noqa: BLE001 - any failure of the exported graph is the kind's
        raise ModelError(f"model kind {kind!r}: the {label} export does not run ({exc.__class__.__name__}: {str(exc)[:200]})") from None
    if not quantize and not diff <= EXPORT_TOLERANCE:
        raise ModelError(
            f"model kind {kind!r}: {label} outputs differ from eager PyTorch by {diff:.3g} on the test split (> {EXPORT_TOLERANCE})"
        )
    eager_metrics, export_metrics = model.evaluate(test), exported.evaluate(test)
    headline = model.task.headline_metric(model.spec)
    h_new, h_old = export_metrics.get(headline), eager_metrics.get(headline)
    change = float(h_new) - float(h_old) if isinstance(h_new, (int, float)) and isinstance(h_old, (int, float)) else None
    accuracy = _points(export_metrics.get("accuracy"), eager_metrics.get("accuracy"))
    if quantize and accuracy is not None and accuracy < -max_drop:
        raise ModelError(
            f"the {label} export of {model.name} changes test accuracy by {accuracy:+.2f} points (more than {max_drop} lost); not written"
        )
    evidence: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_VERSION,
        "package_id": uuid.uuid4().hex,
        "name": model.name,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "export": {"format": fmt, "quantize": quantize, "file": FILES[fmt], **_versions(fmt)},
        "source": {
            "package_id": model.manifest.get("package_id"),
            "package_digest": package_digest,
            "name": model.name,
            "version": model.manifest.get("version"),
            "sealed": seal,
        },
        "check": {
            "data": data_note,
            "rows": n,
            "max_difference": diff,
            "tolerance": None if quantize else EXPORT_TOLERANCE,
            "headline": headline,
            "headline_change": change,
            "accuracy_change_points": accuracy,
            "metrics": {"eager": _numbers(eager_metrics), "export": _numbers(export_metrics)},
        },
    }
    if speed:
        evidence["speed"] = measure_speed(module, runner, inputs, repeats=repeats)
    _write(dest, evidence, blob, keyring, seal)
    return evidence


def measure_speed(
    module: Callable[..., torch.Tensor], other: Callable[..., torch.Tensor], inputs: tuple[torch.Tensor, ...], *, repeats: int = 5
) -> dict[str, Any]:
    """Median milliseconds per call of `module` and `other` at batch 1 and 256, one thread each.

    Rows of `inputs` are repeated to fill a batch of 256. Calls alternate between the two in
    each round, so a machine shared with other work slows both alike; medians of `repeats` rounds.
    """
    out: dict[str, Any] = {"threads": 1, "repeats": repeats}
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for b in _SPEED_BATCHES:
            idx = torch.arange(b) % len(inputs[0])
            x = tuple(t[idx] for t in inputs)
            eager, exported = [], []
            with torch.no_grad():
                module(*x), other(*x)  # warm-up (allocations, first-call paths)
                # Enough calls per round for ~20 ms of the slower one: well above the clock's grain.
                once = max(_per_call(module, x, 1), _per_call(other, x, 1))
                calls = int(min(1000, max(1, 0.02 / max(once, 1e-6))))
                for _ in range(repeats):
                    eager.append(_per_call(module, x, calls))
                    exported.append(_per_call(other, x, calls))
            e, o = statistics.median(eager), statistics.median(exported)
            out[f"batch_{b}"] = {
                "eager_ms": round(e * 1e3, 4),
                "export_ms": round(o * 1e3, 4),
                "speedup": round(e / o, 3) if o > 0 else None,
            }
    finally:
        torch.set_num_threads(before)
    return out


def _per_call(fn: Callable[..., Any], x: tuple[torch.Tensor, ...], calls: int) -> float:
    t0 = time.perf_counter()
    for _ in range(calls):
        fn(*x)
    return (time.perf_counter() - t0) / calls


def _max_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    """The largest difference (relative above magnitude 1, as the server's parity check); inf on a shape mismatch."""
    a64, b64 = a.detach().double(), b.detach().double()
    if a64.shape != b64.shape:
        return float("inf")
    if a64.numel() == 0:
        return 0.0
    return float(((a64 - b64).abs() / a64.abs().clamp(min=1.0)).max())


def _points(new: Any, old: Any) -> float | None:
    if not isinstance(new, (int, float)) or not isinstance(old, (int, float)):
        return None
    return round(100.0 * (float(new) - float(old)), 4)


def _numbers(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)}


def _versions(fmt: str) -> dict[str, Any]:
    out: dict[str, Any] = {"torch": torch.__version__}
    if fmt == "onnx":
        import onnxruntime

        out.update(opset=ONNX_OPSET, onnxruntime=onnxruntime.__version__)
    return out


def _write(dest: Path, evidence: dict[str, Any], blob: bytes, keyring: Keyring, seal: bool) -> None:
    """Write the artefact folder signed (and sealed), then swap it in for any previous one."""
    dest = Path(dest)
    name = evidence["export"]["file"]
    evidence = {**evidence, "files": {name: {"sha256": hashlib.sha256(blob).hexdigest(), "size": len(blob)}}}
    raw = (json.dumps(evidence, indent=1, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")
    tag = uuid.uuid4().hex[:8]
    plain = export_temp_path(dest, "plain", tag)
    with atomic_folder(plain) as tmp:
        write_private_bytes(tmp / name, blob)
        write_private_bytes(tmp / MANIFEST, raw)
        digests = {name: evidence["files"][name]["sha256"], MANIFEST: hashlib.sha256(raw).hexdigest()}
        write_private_bytes(tmp / SIGNATURE_FILE, sign_digests(digests, dest.name, keyring))
    new = plain
    try:
        if seal:
            new = export_temp_path(dest, "sealed", tag)
            seal_package(plain, new, keyring)
        old = export_temp_path(dest, "old", tag)
        if dest.exists():
            os.replace(dest, old)
        os.replace(new, dest)
        fsync_path(dest.parent)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        # The plain copy of a sealed artefact lived only until it was sealed (0700 folder, 0600 files).
        shutil.rmtree(plain, ignore_errors=True)
        if new != plain:
            shutil.rmtree(new, ignore_errors=True)
