"""What a server serves: one model version at a time, swapped atomically when its alias moves.

`ModelService(source, config)` resolves the source (`models:/NAME@alias`, `models:/NAME/3`,
`models:/NAME` for the latest, or a package folder), loads and verifies the model, and builds
a `Runtime`: the model, its signature, the batch queue and the executors (worker processes or
a thread) with one driver thread each. Following an alias (or the latest version), a poller
asks the registry every `poll_s` seconds where it points; when it moves, the new version is
loaded, verified and started off the request path, then `current` is replaced in one
assignment. Requests already queued on the old runtime finish there (its queue drains, then
its workers stop), new requests go to the new one: none is dropped. A version that fails to
load or verify is logged and not served; the old one stays.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import threading
import time
from concurrent.futures import Future, InvalidStateError
from pathlib import Path
from typing import Any

import numpy as np

from trustforge._shown import recorded, remember_written, shown
from trustforge.errors import ModelError, RegistryError, SpecError, TrustForgeError
from trustforge.package import Model, encode_manifest
from trustforge.serve._batching import Batcher, Job
from trustforge.serve._config import ServeConfig
from trustforge.serve._drift import DriftFeed, MonitorProcess, drift_recorder
from trustforge.serve._logging import log_event
from trustforge.serve._metrics import ServeMetrics
from trustforge.serve._ood import detector_for
from trustforge.serve._pii import warm_up_detector
from trustforge.serve._signature import Payload, RequestError, Signature, concat_payloads, slice_columns
from trustforge.serve._workers import (
    UNREACHED_RETRIES,
    InlineExecutor,
    ProcessExecutor,
    WorkerDied,
    WorkerDiedBeforeBatch,
    WorkerFailed,
    WorkerNotRunning,
    load_serving_model,
    use_threads,
)
from trustforge.settings import Settings

__all__ = ["ModelService", "Runtime", "ModelSource", "WorkerCrashed", "InternalError", "package_digest"]


class WorkerCrashed(Exception):
    """A request that made its worker process die twice when run alone (HTTP 500)."""


class InternalError(Exception):
    """The model failed on a batch for a reason that is not the request's (HTTP 500)."""


def package_digest(model: Model) -> str:
    """SHA-256 of the package's manifest.json, which lists every file's SHA-256 (the registry's
    `package_digest`): the manifest's bytes are exactly `encode_manifest(manifest)`, as checked at load."""
    return hashlib.sha256(encode_manifest(model.manifest)).hexdigest()


class ModelSource:
    """A `trustforge serve` argument: a registry URI or a package folder."""

    def __init__(self, text: str, public_key: str | None = None):
        self.text = text
        self.public_key = public_key
        if text.startswith("models:/"):
            from trustforge.registry import parse_model_uri

            self.name, self.version, self.alias = parse_model_uri(text)  # RegistryError names the problem
            self.path: Path | None = None
        else:
            path = Path(text).expanduser()
            if not path.is_dir():
                raise RegistryError(f"{text}: neither a model URI (models:/NAME@alias, models:/NAME/3) nor a package folder")
            self.path = path.resolve()
            remember_written(self.path, text.rstrip("/") or text)  # messages name the package folder as typed
            self.name, self.version, self.alias = None, None, None

    @property
    def follows(self) -> bool:
        """True when the version served can change: an alias, or the latest version."""
        return self.path is None and self.version is None

    @property
    def object(self) -> str:
        """What access checks and audit entries name: the model's URI, or a package folder by its
        name (never its local path, which the audit log would keep for good)."""
        return f"models:/{self.name}" if self.path is None else f"package:{self.path.name}"


ONNX_OOD_REASON = "the out-of-distribution guard does not run on the onnx backend (it needs the torch network's layers)"


def _check_ood_on_onnx(model: Model, config: ServeConfig, name: str) -> None:
    """With `--backend onnx`, a package's detector cannot run (it reads the torch network's layers).

    Raises:
        SpecError: `--ood refuse`, which would otherwise serve every row unguarded.
    """
    if config.ood == "off" or detector_for(model, config.ood) is None:
        return
    if config.ood == "refuse":
        raise SpecError(
            f"--ood refuse cannot be honoured with --backend onnx: {ONNX_OOD_REASON}, so {name}'s foreign rows would be "
            "served; use --backend torch to refuse them, or --ood off to serve without the guard"
        )
    log_event(
        logging.WARNING, "ood_guard_off", model=name, backend="onnx", ood=config.ood, detail=ONNX_OOD_REASON + "; use --backend torch"
    )


class Runtime:
    """One loaded model version with its queue, executors and driver threads."""

    def __init__(
        self,
        *,
        model: Model,
        name: str,
        version: str,
        digest: str,
        uri: str,
        config: ServeConfig,
        load: dict[str, Any],
        metrics: ServeMetrics,
        monitor: Any = None,
        inline_model: Model | None = None,
        audit: Any = None,
        home: Path | None = None,
    ):
        self.model = model
        self.home = home  # the workspace: a log line names a file in it from there (`_shown.recorded`)
        self.name = name
        self.version = version
        self.digest = digest
        self.uri = uri
        self.config = config
        self.signature = Signature.from_manifest(model.manifest)
        self.metrics = metrics
        self.monitor = monitor
        self.batcher = Batcher(config.max_batch_size, config.max_latency_ms, config.max_queue)
        self._load = load
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self.drift: DriftFeed | None = None  # started with the runtime when there is a monitor
        # With worker processes the monitor runs in a process of its own (see `_drift`): not
        # in this one, whose interpreter lock the event loop needs. `monitor` stays the
        # in-process one until that process is ready, and is the fallback if it cannot start.
        self.monitor_process: MonitorProcess | None = None
        if monitor is not None and config.workers > 0:
            self.monitor_process = MonitorProcess(load, uri=uri, audit=audit, name=name)
        self.fallback: InlineExecutor | None = None
        # The out-of-distribution detector runs with the network (None: off, none in the package, or ONNX).
        self.ood = detector_for(inline_model or model, config.ood) if config.backend == "torch" else None
        load = self._load = {**load, "ood": config.ood if self.ood is not None else "off"}
        # What `/version` and the model configuration say about the guard, so that "off" is visible.
        self.ood_guard = {"policy": load["ood"]}
        if self.ood is None and config.ood != "off":
            onnx = config.backend == "onnx" and detector_for(model, config.ood) is not None
            self.ood_guard["reason"] = ONNX_OOD_REASON if onnx else "the package has no out-of-distribution detector"
        if config.workers == 0:
            self.executors: list[Any] = [InlineExecutor(inline_model or model, self.signature, self.ood)]
        else:
            self.executors = [ProcessExecutor(i, load) for i in range(config.workers)]
            # While every worker process is down, the server answers new requests itself with the
            # model it already holds (verified at load), so requests resume at once, not after a restart.
            self.fallback = InlineExecutor(inline_model or model, self.signature, self.ood)

    @property
    def ready(self) -> bool:
        if self._stopping.is_set():
            return False
        return any(ex.ready for ex in self.executors) or (self.fallback is not None and bool(self._threads))

    def start(self) -> None:
        """Start every executor (in parallel) and its driver thread.

        Raises:
            ModelError: no executor could load the model (the first reason is given).
        """
        if self.config.workers == 0:
            _inline_threads(self.config.threads)
        errors: list[BaseException] = []

        def start_one(ex: Any) -> None:
            try:
                ex.start()
            except BaseException as exc:  # noqa: BLE001 - collected and reported below
                errors.append(exc)

        starters = [threading.Thread(target=start_one, args=(ex,), daemon=True) for ex in self.executors]
        monitor_error: list[BaseException] = []
        if self.monitor_process is not None:  # loads beside the workers

            def start_monitor(mp: MonitorProcess) -> None:
                try:
                    mp.start()
                except BaseException as exc:  # noqa: BLE001 - reported below; the in-process monitor takes over
                    monitor_error.append(exc)

            starters.append(threading.Thread(target=start_monitor, args=(self.monitor_process,), daemon=True))
        for t in starters:
            t.start()
        for t in starters:
            t.join()
        if not any(ex.ready for ex in self.executors):
            for ex in self.executors:
                ex.stop()
            first = errors[0] if errors else None
            if isinstance(first, TrustForgeError):
                raise first
            raise ModelError(f"no model worker started for {self.uri}: {first}")
        for exc in errors:
            # As an audit entry keeps an error: no local path, personal values masked before the cut.
            log_event(logging.WARNING, "worker_start_failed", model=self.name, version=self.version, error=recorded(exc, home=self.home))
        labels = {"model": self.name}
        self.metrics.queue_depth.labels(**labels).set_function(lambda: self.batcher.depth)
        for ex in self.executors:
            t = threading.Thread(target=self._drive, args=(ex,), name=f"trustforge-driver-{ex.name}", daemon=True)
            t.start()
            self._threads.append(t)
        if self.fallback is not None:
            t = threading.Thread(target=self._drive_fallback, name="trustforge-driver-fallback", daemon=True)
            t.start()
            self._threads.append(t)
        if self.monitor_process is not None:
            if monitor_error:
                log_event(logging.ERROR, "monitor_process_failed", model=self.name, error=recorded(monitor_error[0], home=self.home))
                self.monitor_process.stop()
                self.monitor_process = None
            else:
                self.monitor = self.monitor_process
        if self.monitor is not None:
            if self.monitor_process is None and hasattr(self.monitor, "prepare"):
                self.monitor.prepare()  # the first window's simulations, before serving rather than during it
            dropped = self.metrics.drift_dropped.labels(model=self.name)
            self.drift = DriftFeed(self.monitor, self.model.read_input, self.signature, name=self.name, on_drop=dropped.inc)

    # ------------------------------------------------------------------ requests

    async def predict(self, payload: Payload) -> dict[str, np.ndarray]:
        """The prediction columns for `payload`'s rows, through the batch queue.

        Raises:
            QueueFull, BatcherClosed: from the queue; asyncio.TimeoutError after `request_timeout_s`.
            RequestError, WorkerCrashed, InternalError: from the model.
        """
        job = Job.of(payload)
        job.solo = not self.signature.batchable  # one request, one series: never mixed with another
        future = self.batcher.submit(job)
        # What asyncio.wait_for(asyncio.wrap_future(future), timeout) does, with one future and
        # one hop to the event loop instead of three futures and two hops.
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        future.add_done_callback(functools.partial(_hand_over, loop, waiter))
        timer = loop.call_later(self.config.request_timeout_s, _time_out, waiter)
        try:
            return await waiter
        finally:
            timer.cancel()
            if not future.done():  # timed out, or the request was cancelled: its batch drops the answer
                future.cancel()

    # ------------------------------------------------------------------ driving executors

    def _drive(self, ex: Any) -> None:
        backoff = 0.5
        while True:
            if self._stopping.is_set() and self.batcher.depth == 0:
                return
            if not ex.ready:
                if self._stopping.is_set():
                    return
                try:
                    ex.start()
                    log_event(
                        logging.INFO,
                        "worker_restarted",
                        model=self.name,
                        version=self.version,
                        worker=ex.name,
                        pid=getattr(ex, "pid", None),
                    )
                    backoff = 0.5
                except Exception as exc:  # noqa: BLE001 - keep trying; other workers serve meanwhile
                    log_event(logging.ERROR, "worker_restart_failed", model=self.name, worker=ex.name, error=recorded(exc, home=self.home))
                    self._stopping.wait(backoff)
                    backoff = min(backoff * 2, 30.0)
                continue
            jobs = self.batcher.take(timeout=0.25)
            if jobs:
                self._execute(ex, jobs)

    def _drive_fallback(self) -> None:
        """Run new requests in the server process while no worker process is running."""
        assert self.fallback is not None
        while True:
            if self._stopping.is_set() and self.batcher.depth == 0:
                return
            if any(ex.ready for ex in self.executors):
                self._stopping.wait(0.02)
                continue
            jobs = self.batcher.take_fresh(timeout=0.02)  # never a job that was on a worker that died
            if jobs:
                self.metrics.fallback_batches.labels(model=self.name).inc()
                self._execute(self.fallback, jobs)

    def _execute(self, ex: Any, jobs: list[Job]) -> None:
        payload = concat_payloads([j.payload for j in jobs])
        rows = sum(j.rows for j in jobs)
        started = time.perf_counter()
        try:
            columns = ex.run(payload)
        except WorkerDiedBeforeBatch as exc:  # a worker died, but not of this batch: it never read it
            self._worker_died(ex, jobs, exc, reached=False)
            return
        except WorkerNotRunning:  # it never reached the worker: back to the queue, no attempt counted
            self.batcher.requeue(jobs)
            return
        except WorkerDied as exc:
            self._worker_died(ex, jobs, exc)
            return
        except RequestError as exc:
            if len(jobs) == 1:
                _fail(jobs[0], RequestError(exc.template))  # its quoted values whole, for the masker
            else:  # find the request at fault: each runs alone, and only it gets the error
                for job in jobs:
                    self._execute(ex, [job])
            return
        except (WorkerFailed, TrustForgeError, Exception) as exc:  # noqa: BLE001
            log_event(
                logging.ERROR,
                "batch_failed",
                model=self.name,
                version=self.version,
                rows=rows,
                error=f"{exc.__class__.__name__}: {str(exc)[:300]}",
            )
            for job in jobs:
                _fail(job, InternalError("the model failed on this batch; the error is in the server log"))
            return
        elapsed = time.perf_counter() - started
        got = len(next(iter(columns.values()))) if columns else 0
        if len(jobs) == 1 and not self.signature.batchable:
            rows = got  # a forecast: `horizon` rows for one series, whatever its length
        if got != rows:
            for job in jobs:
                _fail(job, InternalError(f"the model returned {got} rows for {rows}"))
            return
        self.batcher.record_batch(elapsed)
        self.metrics.batch_size.labels(model=self.name).observe(rows)
        self.metrics.batch_seconds.labels(model=self.name).observe(elapsed)
        if self.drift is not None:
            # Queued before the answers go out (never blocks: a full queue drops the batch and
            # counts it), so a status read after a response always counts that response's rows.
            self.drift.offer(payload, columns)
        if len(jobs) == 1:
            _resolve(jobs[0], columns)
        else:
            offset = 0
            for job in jobs:
                _resolve(job, slice_columns(columns, offset, offset + job.rows))
                offset += job.rows

    def _worker_died(self, ex: Any, jobs: list[Job], exc: Exception, *, reached: bool = True) -> None:
        """A worker died holding `jobs`: requeue them, isolating or failing whichever kills workers.

        `reached=False`: the worker had died before it read the batch, so the death is not the
        batch's and costs it no attempt, up to `UNREACHED_RETRIES` such deaths per job (then
        they count, so a request that kills workers while they read it still fails)."""
        self.metrics.worker_restarts.labels(model=self.name).inc()
        log_event(
            logging.WARNING,
            "worker_died",
            model=self.name,
            version=self.version,
            worker=ex.name,
            pid=getattr(ex, "pid", None),
            requests=len(jobs),
            batch_read=reached,
        )
        if not reached:
            for job in jobs:
                job.unreached += 1
            if all(job.unreached <= UNREACHED_RETRIES for job in jobs):
                self.metrics.batches_retried.labels(model=self.name).inc()
                self.batcher.requeue(jobs)
                return
        for job in jobs:
            job.attempts += 1
        if len(jobs) == 1 and jobs[0].attempts >= 2:
            _fail(jobs[0], WorkerCrashed("the model worker died twice running this request alone; it was not retried again"))
            return
        if any(job.attempts >= 2 for job in jobs):
            for job in jobs:  # isolate whichever request kills workers
                job.solo = True
        self.metrics.batches_retried.labels(model=self.name).inc()
        self.batcher.requeue(jobs)

    # ------------------------------------------------------------------ stopping

    def close(self, timeout: float = 30.0) -> None:
        """Stop accepting requests, finish the queued ones, then stop the executors."""
        self.batcher.close()
        self._stopping.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        from trustforge.serve._batching import BatcherClosed

        self.batcher.fail_all(BatcherClosed("the server is stopping"))
        for ex in self.executors:
            ex.stop()
        if self.drift is not None:
            self.drift.close()
        if self.monitor is not None and hasattr(self.monitor, "flush_alerts"):
            self.monitor.flush_alerts()
        if self.monitor_process is not None:
            self.monitor_process.stop()


def _hand_over(loop: asyncio.AbstractEventLoop, waiter: asyncio.Future, future: Future) -> None:
    """(Any thread) a job's future is settled: settle its waiter on the event loop."""
    try:
        loop.call_soon_threadsafe(_settle, waiter, future)
    except RuntimeError:  # the loop is closed: nobody waits any more
        pass


def _settle(waiter: asyncio.Future, future: Future) -> None:
    if waiter.done():
        return
    if future.cancelled():
        waiter.cancel()
        return
    exc = future.exception()
    if exc is not None:
        waiter.set_exception(exc)
    else:
        waiter.set_result(future.result())


def _time_out(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_exception(asyncio.TimeoutError())


def _inline_threads(threads: int) -> None:
    """`--workers 0`: the model runs in this process, so `--threads` applies to its torch and numpy's
    BLAS (left to torch, it took every core and ran one-row batches at a seventh of the speed of one
    thread)."""
    import torch

    changed = torch.get_num_threads() != threads
    use_threads(threads)
    if changed:
        log_event(logging.INFO, "torch_threads", threads=threads)


def _resolve(job: Job, value: Any) -> None:
    try:
        if not job.future.done():
            job.future.set_result(value)
    except InvalidStateError:  # the client went away and the future was cancelled
        pass


def _fail(job: Job, exc: BaseException) -> None:
    try:
        if not job.future.done():
            job.future.set_exception(exc)
    except InvalidStateError:
        pass


class ModelService:
    """The model a server serves, followed through the registry.

    Args:
        source: a model URI or a package folder.
        config: the server options.
        settings: workspace settings (default: from the environment).
        registry: an open `Registry` (its principal loads the model); opened from `settings`
            when not given and the source is a URI.
        metrics: where to count; a fresh `ServeMetrics` by default.
        public_key: PEM public key for a package folder signed in another workspace.
        debug_delay_s: tests only: each worker holds every batch this long.
    """

    def __init__(
        self,
        source: str | ModelSource,
        config: ServeConfig | None = None,
        *,
        settings: Settings | None = None,
        registry: Any = None,
        metrics: ServeMetrics | None = None,
        public_key: str | None = None,
        debug_delay_s: float = 0.0,
    ):
        self.source = source if isinstance(source, ModelSource) else ModelSource(source, public_key)
        self.config = config or ServeConfig()
        self.settings = settings or (registry.settings if registry is not None else Settings.from_env())
        self.metrics = metrics or ServeMetrics()
        self._registry = registry
        self._own_registry = False
        self._current: Runtime | None = None
        self._lock = threading.Lock()  # one swap at a time
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self._debug_delay_s = debug_delay_s
        self._last_failed: str | None = None
        self._on_close: list[Any] = []
        self.metrics.drift_from(self._drift_scores)

    def on_close(self, fn: Any) -> None:
        """Call `fn()` when the service closes (after its workers stop)."""
        self._on_close.append(fn)

    @property
    def current(self) -> Runtime | None:
        """The runtime requests go to now (None before `start`)."""
        return self._current

    @property
    def registry(self):
        if self._registry is None:
            from trustforge.registry import Registry

            self._registry = Registry(self.settings)
            self._own_registry = True
        return self._registry

    def start(self) -> "ModelService":
        """Load the model and start serving it; start following its alias if it has one.

        Raises:
            TrustForgeError: the model cannot be resolved, verified, loaded or exported.
        """
        name, version, uri = self._resolve()
        self._current = self._build(name, version, uri)
        self._publish(self._current)
        log_event(
            logging.INFO,
            "model_loaded",
            model=name,
            version=version,
            backend=self.config.backend,
            workers=self.config.workers,
            digest=self._current.digest[:16],
        )
        if self.source.follows:
            self._poller = threading.Thread(target=self._poll, name="trustforge-alias-poller", daemon=True)
            self._poller.start()
        return self

    def _resolve(self) -> tuple[str, str, str]:
        """(name, version, pinned URI) of what the source designates now; a package folder's
        "URI" is its audit object (`package:NAME`): logs, audit entries and the drift API name
        the model by it, never by the folder's local path."""
        if self.source.path is not None:
            return "", "1", self.source.object
        mv = self.registry.get(self.source.text)
        return mv.name, str(mv.version), mv.uri

    def _build(self, name: str, version: str, uri: str) -> Runtime:
        s = self.settings
        load: dict[str, Any] = {
            "settings": {
                "home": str(s.home),
                "db_url": s.db_url,
                "artifacts": str(s.artifacts) if s.artifacts else None,
                "kek": s.kek,
                "token": s.token,
            },
            "backend": self.config.backend,
            "threads": self.config.threads,
            "debug_delay_s": self._debug_delay_s,
        }
        if self.source.path is not None:
            load.update(source="path", path=str(self.source.path), public_key=self.source.public_key)
            try:
                model = load_serving_model({**load, "backend": "torch"})
            except TrustForgeError as exc:  # the package's files named from its folder as given, not as resolved
                raise type(exc)(shown(str(exc))) from None
            name, version = model.name, str(model.manifest.get("version") or version)
        else:
            from trustforge.monitor import history_dir

            # Every window the monitor tests goes to the model's drift history in the workspace
            # (written by the monitor, off the request path; the dashboard's drift page reads it).
            load.update(source="registry", uri=uri, drift_history={"folder": str(history_dir(s.home)), "name": name})
            model = self.registry.load_model(uri)  # decrypted in memory and verified
        if model.manifest.get("pii"):  # it masks its inputs (`data.protect`): the drift feed and fallback do here
            warm_up_detector(background=True)
        digest = package_digest(model)
        inline_model = None
        if self.config.backend == "onnx":
            _check_ood_on_onnx(model, self.config, name or model.name)
            from trustforge.secure import Keyring
            from trustforge.serve._onnx import load_export_model, load_onnx_model, pick_export, prepare_onnx

            keyring = getattr(self._registry, "keyring", None) or Keyring.load_or_init(s.keys_dir, kek_b64=s.kek)
            load["digest"] = digest
            picked = pick_export(model, digest, keyring)  # `package export`'s artefact (int8 first), else the cache
            if picked is not None:
                load["onnx_export"] = str(picked[0])
                quantize = picked[1]["export"].get("quantize")
                log_event(logging.INFO, "onnx_artefact", model=name or model.name, artefact=picked[0].name, quantize=quantize)
                if self.config.workers == 0:
                    inline_model = load_export_model(model, picked[0], digest, keyring, self.config.threads)
            else:
                load["onnx_file"] = str(prepare_onnx(model, digest, s.cache_dir, keyring))
                if self.config.workers == 0:
                    inline_model = load_onnx_model(model, Path(load["onnx_file"]), digest, keyring, self.config.threads)
        runtime = Runtime(
            model=model,
            name=name,
            version=version,
            digest=digest,
            uri=uri,
            config=self.config,
            load=load,
            metrics=self.metrics,
            monitor=self._monitor_for(model, uri, load.get("drift_history")),
            inline_model=inline_model,
            audit=getattr(self._registry, "audit", None),
            home=self.settings.home,
        )
        runtime.start()
        return runtime

    def _monitor_for(self, model: Model, uri: str, history: dict[str, str] | None = None) -> Any:
        try:
            from trustforge.monitor import DriftMonitor
        except ImportError:
            return None
        try:
            audit = getattr(self._registry, "audit", None)
            # One alert per minute at most, however many windows drift (one request may fill hundreds).
            # Prepared (its first window simulated) by the runtime, when it observes in this process.
            return DriftMonitor.for_model(
                model, audit=audit, actor="serve", uri=uri, alert_interval_s=60.0, record=drift_recorder(history, uri)
            )
        except Exception as exc:  # noqa: BLE001 - serving goes on without drift monitoring
            log_event(logging.ERROR, "monitor_unavailable", model=model.name, error=recorded(exc, home=self.settings.home, limit=200))
            return None

    def _publish(self, runtime: Runtime) -> None:
        self.metrics.model_info.clear()
        self.metrics.model_info.labels(model=runtime.name, version=runtime.version, backend=self.config.backend).set(1)

    def _drift_scores(self) -> tuple[str, dict[str, float]] | None:
        rt = self._current
        if rt is None or rt.monitor is None:
            return None
        return rt.name, dict(rt.monitor.scores())

    # ------------------------------------------------------------------ following an alias

    def _poll(self) -> None:
        while not self._stop.wait(self.config.poll_s):
            try:
                self.check_for_update()
            except Exception as exc:  # noqa: BLE001 - the poller must survive registry hiccups
                log_event(logging.ERROR, "poll_failed", source=self.source.text, error=f"{exc.__class__.__name__}: {str(exc)[:200]}")

    def check_for_update(self) -> bool:
        """Ask the registry where the source points; swap to that version if it moved.

        Returns:
            True when a new version is now served.
        """
        with self._lock:
            if self._stop.is_set():
                return False
            try:
                name, version, uri = self._resolve()
            except TrustForgeError as exc:
                log_event(
                    logging.WARNING, "alias_unresolved", source=self.source.text, error=recorded(exc, home=self.settings.home, limit=200)
                )
                return False
            old = self._current
            if old is not None and old.version == version:
                return False
            try:
                new = self._build(name, version, uri)  # loaded, verified, started: off the request path
            except TrustForgeError as exc:
                self.metrics.reloads.labels(outcome="failed").inc()
                if self._last_failed != uri:
                    error = recorded(exc, home=self.settings.home)  # no local path; masked, then cut
                    log_event(logging.ERROR, "reload_failed", model=name, version=version, error=error)
                self._last_failed = uri
                return False
            self._current = new  # the swap: one assignment, atomic for readers
            self._last_failed = None
            self._publish(new)
            self.metrics.reloads.labels(outcome="ok").inc()
            log_event(
                logging.INFO,
                "model_swapped",
                model=name,
                version=version,
                previous=old.version if old is not None else None,
                digest=new.digest[:16],
            )
        if old is not None:  # drain the old version in the background; its queued requests finish there
            threading.Thread(target=old.close, name="trustforge-drain", daemon=True).start()
        return True

    def close(self) -> None:
        """Stop following, finish queued requests, stop the workers."""
        self._stop.set()
        if self._poller is not None:
            self._poller.join(10)
        with self._lock:
            rt, self._current = self._current, None
        if rt is not None:
            rt.close()
        for fn in self._on_close:
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 - closing goes on
                log_event(logging.ERROR, "close_failed", error=f"{exc.__class__.__name__}: {str(exc)[:200]}")
        if self._own_registry and self._registry is not None:
            self._registry.close()
