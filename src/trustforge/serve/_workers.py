"""Where batches run: in a thread of the server, or in model worker processes.

The server process speaks HTTP, checks tokens and requests, and batches; workers only predict.
Each worker is a fresh interpreter that loads and verifies the package itself (from the
registry, decrypted in memory, or from a folder), then answers batches over a socket in the
`_codec` format (JSON and raw arrays, no pickle). The server keeps one thread per worker that
takes batches from the shared queue and waits for the answer, watching the process too:

- a worker that dies mid-batch (killed, out of memory, a crash in native code) costs no
  request: its batch goes back to the front of the queue for the other workers, and the
  worker is started again; a batch whose worker dies twice is split into single requests,
  and a request that kills a worker on its own twice gets an error (HTTP 500), so one poison
  request cannot take the service down;
- a worker that was already dead when a batch was sent to it (killed, not yet noticed: the
  batch went to its socket but it never read it) did not die of that batch: the batch goes back
  to the queue without counting as an attempt (`WorkerDiedBeforeBatch`), so it runs on a live
  worker rather than failing as "died twice" beside a healthy replacement. A batch that keeps
  meeting dead workers counts as an attempt after `UNREACHED_RETRIES` of them, so retrying ends;
- while no worker process is running (all of them killed at once), the server runs new
  requests itself, on the model it loaded and verified at start (an `InlineExecutor`), until
  a worker is back: requests resume at once instead of after a restart (seconds: a fresh
  interpreter imports torch and verifies the package). Requests that were on a worker when
  it died are never run in the server process (one of them may be what killed it): they wait
  for a worker process;
- a batch the model refuses (a value the preprocessor rejects) is run again one request at a
  time, so only the bad request gets its 400.

Workers ignore SIGINT (Ctrl-C reaches the whole process group; the server stops them in order)
and exit when the server's end of their socket closes, so none outlive a server that was killed.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from trustforge.errors import DataError, ModelError, TrustForgeError
from trustforge.serve._codec import CodecError, pack, unpack
from trustforge.serve._ood import add_ood_columns, detector_for
from trustforge.serve._signature import Payload, RequestError, Signature

__all__ = [
    "Executor",
    "InlineExecutor",
    "ProcessExecutor",
    "UNREACHED_RETRIES",
    "WorkerDied",
    "WorkerDiedBeforeBatch",
    "WorkerNotRunning",
    "WorkerFailed",
    "load_serving_model",
    "predict_payload",
]

Columns = dict[str, np.ndarray]


class WorkerDied(Exception):
    """The worker process ended while it held a batch."""


class WorkerNotRunning(WorkerDied):
    """The worker was not running when a batch was handed to it: the batch never reached it."""


class WorkerDiedBeforeBatch(WorkerNotRunning):
    """The worker process had ended before it read the batch: sending failed (its end of the
    socket was closed), or it closed with the batch still unread (Linux reports that as a reset
    connection, a worker that read the batch and then died as end-of-file)."""


# How often a batch may meet a worker that died before reading it without that counting as an
# attempt: past it, each such death counts, so a request that kills workers as they read it fails.
UNREACHED_RETRIES = 3


class WorkerFailed(Exception):
    """The model raised an unexpected error on a batch (a bug, not bad input)."""


class Executor(Protocol):
    """Runs one batch at a time: `run(payload) -> prediction columns`."""

    name: str

    @property
    def ready(self) -> bool: ...

    def start(self) -> None: ...

    def run(self, payload: Payload) -> Columns: ...

    def stop(self) -> None: ...


# ---------------------------------------------------------------------------- loading (both sides)


def load_serving_model(load: dict[str, Any]):
    """The model a load description names, verified, on the chosen backend.

    `load` is JSON-able: `{"source": "registry", "uri": "models:/NAME/3"}` or `{"source":
    "path", "path": ..., "public_key": ...}`, plus `settings` (home, db_url, artifacts, kek,
    token), `backend`, and for ONNX `digest` and `onnx_export` (a `package export` artefact) or
    `onnx_file` (the serve cache's export); `threads`.
    """
    from trustforge.package import Model
    from trustforge.secure import Keyring
    from trustforge.settings import Settings

    s = load["settings"]
    settings = Settings(
        home=Path(s["home"]),
        db_url=s["db_url"],
        artifacts=Path(s["artifacts"]) if s.get("artifacts") else None,
        kek=s.get("kek"),
        token=s.get("token"),
    )
    keyring = None
    if load["source"] == "registry":
        from trustforge.registry import Registry

        with Registry(settings) as registry:
            model = registry.load_model(load["uri"])
            keyring = registry.keyring
    else:
        public_key = load.get("public_key")
        if public_key:
            model = Model.load(load["path"], public_key=public_key)
        else:
            keyring = Keyring.load(settings.keys_dir, kek_b64=settings.kek)
            model = Model.load(load["path"], keyring=keyring)
    if load.get("backend") == "onnx":
        from trustforge.serve._onnx import load_export_model, load_onnx_model

        if keyring is None:
            keyring = Keyring.load_or_init(settings.keys_dir, kek_b64=settings.kek)
        if load.get("onnx_export"):  # `package export`'s artefact, verified again in this process
            return load_export_model(model, Path(load["onnx_export"]), load["digest"], keyring, threads=int(load.get("threads", 1)))
        model = load_onnx_model(model, Path(load["onnx_file"]), load["digest"], keyring, threads=int(load.get("threads", 1)))
    return model


def predict_payload(model: Any, payload: Payload, signature: Signature, ood: Any = None) -> Columns:
    """The prediction columns of a batch: the payload's arrays go to `Model.predict_columns` as
    they are (the signature's inputs, in its order; a tensor under its input's name). With an
    out-of-distribution detector (`_ood.detector_for`), its verdict rides along in two reserved
    columns, from the same forward pass."""
    if isinstance(payload, np.ndarray):
        columns: Columns = {signature.tensor.name: payload}
    else:
        columns = {s.name: payload[s.name] for s in signature.inputs if s.name in payload}
    return model.predict_columns(columns) if ood is None else add_ood_columns(ood, model, columns)


# ---------------------------------------------------------------------------- in-process


class InlineExecutor:
    """Runs batches in the calling thread of the server process (`--workers 0`)."""

    def __init__(self, model: Any, signature: Signature, ood: Any = None):
        self.name = "inline"
        self.model = model
        self.signature = signature
        self.ood = ood  # the out-of-distribution detector, or None

    @property
    def ready(self) -> bool:
        return True

    def start(self) -> None:
        return None

    def run(self, payload: Payload) -> Columns:
        try:
            return predict_payload(self.model, payload, self.signature, self.ood)
        except DataError as exc:
            raise RequestError(str(exc)) from None
        except TrustForgeError:
            raise
        except Exception as exc:  # noqa: BLE001 - reported as a failed batch, never as a traceback to clients
            raise WorkerFailed(f"{exc.__class__.__name__}: {str(exc)[:200]}") from exc

    def stop(self) -> None:
        return None


# ---------------------------------------------------------------------------- worker processes


def use_threads(threads: int) -> None:
    """Run torch and numpy's BLAS (the OOD guard's products) on `threads` threads: left to
    themselves, each takes every core (see `trustforge.train._threads`)."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    threadpool_limits(limits=threads, user_api="blas")


def _worker_main(conn: Connection) -> None:
    """The body of a worker process: load, say ready, then answer batches until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        load, _ = unpack(conn.recv_bytes())
    except (EOFError, OSError, CodecError):
        return
    if load.get("role") == "monitor":  # the drift monitor's process (see `_drift.MonitorProcess`)
        from trustforge.serve._drift import monitor_main

        monitor_main(conn, load)
        return
    try:
        use_threads(max(1, int(load.get("threads", 1))))
        model = load_serving_model(load)
        signature = Signature.from_manifest(model.manifest)
        ood = detector_for(model, load.get("ood", "off"))
        if model.manifest.get("pii"):  # it masks its inputs (`data.protect`): not at the first request
            from trustforge.serve._pii import warm_up_detector

            warm_up_detector(background=False)
    except Exception as exc:  # noqa: BLE001 - every load failure is reported to the server as one line
        text = str(exc) if isinstance(exc, TrustForgeError) else f"{exc.__class__.__name__}: {str(exc)[:300]}"
        conn.send_bytes(pack({"type": "error", "error": text}))
        return
    delay = float(load.get("debug_delay_s") or 0.0)  # tests: hold each batch long enough to kill us mid-batch
    conn.send_bytes(pack({"type": "ready", "pid": os.getpid()}))
    while True:
        try:
            message = conn.recv_bytes()
        except (EOFError, OSError):
            return  # the server is gone
        try:
            meta, arrays = unpack(message)
        except CodecError as exc:
            conn.send_bytes(pack({"type": "error", "error": f"bad message: {exc}"}))
            continue
        if meta.get("type") == "stop":
            return
        started = time.perf_counter()
        if delay:
            time.sleep(delay)
        try:
            columns = predict_payload(model, arrays, signature, ood)
            reply = pack({"type": "result", "seconds": time.perf_counter() - started}, columns)
        except DataError as exc:
            reply = pack({"type": "data_error", "error": str(exc)})
        except Exception as exc:  # noqa: BLE001 - a model bug fails the batch, not the worker
            reply = pack({"type": "error", "error": f"{exc.__class__.__name__}: {str(exc)[:300]}"})
        try:
            conn.send_bytes(reply)
        except (BrokenPipeError, OSError):
            return


class ProcessExecutor:
    """One model worker process and the socket to it.

    The worker is a fresh interpreter (`python -m trustforge.serve._worker FD`), not a fork:
    nothing of the server's threads or memory is copied, and nothing of the program that
    started the server is imported again. It reads what to load from the socket (secrets
    never appear in its command line or environment).

    Args:
        index: the worker's number (for names and logs).
        load: what the worker loads (see `load_serving_model`).
        start_timeout_s: how long loading may take before the start counts as failed.
        name: its name in logs and errors (default `worker-INDEX`).
    """

    def __init__(self, index: int, load: dict[str, Any], start_timeout_s: float = 300.0, *, name: str | None = None):
        self.name = name or f"worker-{index}"
        self.load = load
        self.start_timeout_s = start_timeout_s
        self.process: subprocess.Popen | None = None
        self.conn: Connection | None = None
        self.pid: int | None = None
        self.busy = False
        self._ready = False

    @property
    def ready(self) -> bool:
        return self._ready and self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start the worker and wait until it has loaded the model.

        Raises:
            ModelError: it reported a load failure (the message says why) or exited while loading.
        """
        self.stop()
        ours, theirs = socket.socketpair()
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "trustforge.serve._worker", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        finally:
            theirs.close()  # the worker holds its end now; when it exits, ours reads end-of-file
        conn = Connection(ours.detach())
        self.process, self.conn, self.pid = process, conn, process.pid
        try:
            conn.send_bytes(pack(self.load))
        except OSError:
            pass  # it died at once; the wait below reports how
        if not conn.poll(self.start_timeout_s):
            self.stop()
            raise ModelError(f"model {self.name} did not finish loading within {self.start_timeout_s:.0f} s")
        try:
            meta, _ = unpack(conn.recv_bytes())
        except (EOFError, OSError, CodecError):
            code = process.wait(5) if process.poll() is None else process.returncode
            self.stop()
            raise ModelError(f"model {self.name} exited with code {code} while loading the model") from None
        if meta.get("type") != "ready":
            self.stop()
            raise ModelError(f"model {self.name} could not load the model: {meta.get('error')}")
        self._ready = True

    def run(self, payload: Payload) -> Columns:
        """Run one batch in the worker.

        Raises:
            WorkerDied: the process ended before answering (the batch may be run elsewhere).
            RequestError: the model refused a value in the batch.
            WorkerFailed: the model raised an unexpected error.
        """
        self.busy = True
        try:
            meta, arrays = self.request({"type": "batch"}, payload)
        finally:
            self.busy = False
        kind = meta.get("type")
        if kind == "result":
            return arrays if isinstance(arrays, dict) else {}
        if kind == "data_error":
            raise RequestError(str(meta.get("error")))
        raise WorkerFailed(str(meta.get("error")))

    def request(self, meta: dict[str, Any], arrays: Payload | None = None) -> tuple[dict[str, Any], Any]:
        """Send one message and wait for the answer: (meta, arrays).

        Raises:
            WorkerNotRunning: the process is not running (nothing was sent).
            WorkerDiedBeforeBatch: the process had ended, or ended before reading the message.
            WorkerDied: the process ended after reading the message, before answering.
            WorkerFailed: the answer is not a well-formed message.
        """
        if not self.ready or self.conn is None:
            raise WorkerNotRunning(f"{self.name} is not running")
        # `ready` polls the process, but a worker killed an instant ago is still "running" until
        # the kernel has ended it: the batch can be sent to a worker that will never read it.
        try:
            self.conn.send_bytes(pack(meta, arrays))
        except OSError:  # EPIPE, ECONNRESET: its end is closed, it is gone
            self._lost()
            raise WorkerDiedBeforeBatch(f"{self.name} (pid {self.pid}) had died before the batch reached it") from None
        try:
            message = self.conn.recv_bytes()
        except ConnectionResetError:  # it closed with our message (or part of it) unread
            self._lost()
            raise WorkerDiedBeforeBatch(f"{self.name} (pid {self.pid}) died before reading the batch") from None
        except (EOFError, OSError):  # it read the batch, then died
            self._lost()
            raise WorkerDied(f"{self.name} (pid {self.pid}) died before answering") from None
        try:
            return unpack(message)
        except CodecError as exc:
            raise WorkerFailed(f"{self.name} answered with a malformed message ({exc})") from None

    def _lost(self) -> None:
        self._ready = False
        if self.process is not None:
            try:
                self.process.wait(1)
            except subprocess.TimeoutExpired:
                pass

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the worker to exit; terminate it if it does not within `timeout`."""
        process, conn = self.process, self.conn
        self._ready = False
        self.process = self.conn = None
        if conn is not None:
            try:
                conn.send_bytes(pack({"type": "stop"}))
            except OSError:
                pass
        if process is not None:
            for end in (lambda: None, process.terminate, process.kill):
                end()
                try:
                    process.wait(timeout if end is not process.kill else 5)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if conn is not None:
            conn.close()
