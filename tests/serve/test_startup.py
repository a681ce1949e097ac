"""What a server's processes load before it is ready: each only what it runs.

A model worker and the drift monitor are fresh interpreters (`python -m trustforge.serve._worker`);
the web application, SciPy's statistics and the PII detector's Chinese dictionaries cost about a
second each to load, and a process that never uses them must not wait for them (nor make the
server wait: `trustforge serve` is ready when its worker and monitor have loaded).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap


def _loaded_after(code: str) -> dict[str, bool]:
    """Which of the costly modules a fresh interpreter holds after running `code`."""
    probe = textwrap.dedent(code) + textwrap.dedent(
        """
        import json, sys
        print(json.dumps({m: m in sys.modules for m in ("fastapi", "starlette", "uvicorn", "scipy.stats", "jieba", "trustforge.serve._app")}))
        """
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_worker_or_monitor_process_loads_neither_the_web_application_nor_the_tests():
    """What `python -m trustforge.serve._worker` imports before it reads what to load."""
    loaded = _loaded_after("import trustforge.serve._worker, trustforge.serve._workers, trustforge.serve._drift")
    assert not any(loaded.values()), loaded


def test_the_serve_package_still_offers_its_names():
    loaded = _loaded_after(
        """
        import trustforge.serve as s
        assert {"ServeConfig", "ModelService", "create_app", "serve", "Signature"} <= set(dir(s))
        assert s.ServeConfig(workers=0).workers == 0 and callable(s.create_app)
        """
    )
    assert loaded["fastapi"] and loaded["trustforge.serve._app"]  # create_app, on first use


def test_masked_logs_load_the_name_dictionaries_at_the_first_chinese_text_not_at_start():
    """`--pii-in-logs never` (the default) starts without the Chinese dictionaries; the first
    field with Chinese text loads them in the log writer, and the name in it is masked."""
    loaded = _loaded_after(
        """
        import io, json, logging, sys
        from trustforge.serve import _logging
        from trustforge.serve._pii import mask_logs

        stream = io.StringIO()
        _logging.sys.stderr = stream
        _logging.configure_logging()
        mask_logs("never")
        _logging.log_event(logging.INFO, "listening", host="127.0.0.1", port=1)
        _logging.flush_logs(10.0)
        import threading
        assert "jieba" not in sys.modules and all(t.name != "pii-warm-up" for t in threading.enumerate()), "loading at start"
        _logging.log_event(logging.ERROR, "batch_failed", error="could not convert '王伟' in column name")
        _logging.flush_logs(30.0)
        last = json.loads(stream.getvalue().splitlines()[-1])
        assert last["error"] == "could not convert '<PERSON>' in column name", last
        _logging.stop_logging()
        """
    )
    assert loaded["jieba"]


def test_a_worker_runs_torch_and_numpys_blas_on_its_threads_without_loading_scipy():
    """`use_threads` (a worker's `--threads`, and the server's own with `--workers 0`): torch and
    numpy's BLAS, which the OOD guard's products run on, on that count; SciPy stays unloaded."""
    probe = textwrap.dedent(
        """
        import json, sys
        from threadpoolctl import threadpool_info, threadpool_limits
        import numpy, torch
        threadpool_limits(limits=2, user_api="blas")  # as if the machine had two cores to give
        torch.set_num_threads(2)
        from trustforge.serve._workers import use_threads
        use_threads(1)
        blas = sorted({i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"})
        print(json.dumps({"torch": torch.get_num_threads(), "blas": blas, "scipy": "scipy" in sys.modules}))
        """
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"torch": 1, "blas": [1], "scipy": False}
