"""The runs pages of the dashboard: list (filter, sort, pages), compare, one run, its report and
card, and the refusal of every run name that is not a plain folder of the runs folder."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

STATES = ("completed", "interrupted", "failed", "running", "killed")


def _synthetic(runs_dir: Path, n: int) -> list[str]:
    """`n` small run folders with the files read_run reads: states cycle through STATES (a
    "killed" run is a "running" status whose process is gone), accuracy i/1000, names
    alpha/beta by parity, and every 7th run a regression."""
    names = []
    for i in range(n):
        name = f"{'alpha' if i % 2 else 'beta'}-{i:04d}-20260101-000000"
        folder = runs_dir / name
        folder.mkdir(parents=True)
        kind = STATES[i % len(STATES)]
        status = {"state": "running" if kind == "killed" else kind, "started": f"2026-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}+00:00"}
        status["pid"] = 2**22 + 12345 if kind == "killed" else os.getpid()  # no such process / this one
        (folder / "status.json").write_text(json.dumps(status))
        task = "regression" if i % 7 == 0 else "classification"
        (folder / "spec.yaml").write_text(f"name: {name.split('-')[0]}\ntask: {task}\ntrain: {{max_epochs: 3, seed: {i}}}\n")
        if kind == "completed":
            metrics = {"rmse": i / 1000} if task == "regression" else {"accuracy": i / 1000, "log_loss": 1 - i / 1000}
            (folder / "metrics.json").write_text(json.dumps({**metrics, "n": 30, "fit_seconds": i / 10}))
            (folder / "evidence.json").write_text(json.dumps({"baseline": {"baseline": 0.5, "metric": "accuracy", "verdict": "beats"}}))
        (folder / "epochs.csv").write_text("epoch,train_loss,val_loss\n1,1.0,1.1\n2,0.5,0.7\n")
        for path in [*folder.iterdir(), folder]:  # written a minute ago: past the index's "just changed" window
            os.utime(path, (time.time() - 60, time.time() - 60))
        names.append(name)
    return names


def _runs_on_page(html: str) -> list[str]:
    return re.findall(r'data-testid="run-row" data-run="([^"]+)"', html)


@pytest.fixture
def many(ui_workspace, monkeypatch):
    """The test workspace with 300 synthetic runs beside its two trained ones (listed at once,
    not read in the background: see test_a_first_listing_of_many_runs_is_read_in_the_background)."""
    from trustforge.ui import _runs

    monkeypatch.setattr(_runs, "_WARM_AFTER", 10_000)
    return _synthetic(ui_workspace["settings"].runs_dir, 300)


def test_a_first_listing_of_many_runs_is_read_in_the_background(client_as, ui_workspace, ui_app, monkeypatch):
    from trustforge.ui import _runs

    monkeypatch.setattr(_runs, "_WARM_AFTER", 50)
    _synthetic(ui_workspace["settings"].runs_dir, 120)
    client = client_as("viewer")
    first = client.get("/runs")
    assert first.status_code == 200 and 'data-testid="runs-indexing"' in first.text
    assert '<meta http-equiv="refresh"' in first.text and 'data-testid="runs-table"' not in first.text
    deadline = time.monotonic() + 60
    while ui_app.state.runs_index.warming and time.monotonic() < deadline:
        time.sleep(0.05)
    page = client.get("/runs?per=200")
    assert 'data-testid="runs-table"' in page.text and len(_runs_on_page(page.text)) == 122


def test_list_shows_the_trained_runs_with_their_figures(client_as, ui_workspace):
    page = client_as("viewer").get("/runs")
    assert page.status_code == 200
    assert 'data-testid="runs-table"' in page.text
    assert _runs_on_page(page.text) and set(_runs_on_page(page.text)) == set(ui_workspace["runs"])
    assert "accuracy" in page.text and "finished" in page.text
    for run in ui_workspace["runs"]:
        assert f'href="/runs/{run}"' in page.text and f'name="run" value="{run}"' in page.text
    assert 'data-testid="compare"' in page.text and 'action="/runs/compare"' in page.text
    assert str(ui_workspace["settings"].home) not in page.text  # no local path on a page


def test_empty_workspace_says_how_to_start(client_as, ui_workspace):
    import shutil

    for run in ui_workspace["runs"]:
        shutil.rmtree(ui_workspace["settings"].runs_dir / run)
    page = client_as("viewer").get("/runs")
    assert page.status_code == 200 and 'data-testid="runs-empty"' in page.text and "trustforge train SPEC" in page.text


def test_paging_sorting_and_filters_over_300_runs(client_as, many):
    client = client_as("viewer")
    first = client.get("/runs?per=50&sort=run&order=asc")
    rows = _runs_on_page(first.text)
    assert len(rows) == 50 and rows == sorted(rows)
    everything = []
    for page in range(1, 8):
        everything += _runs_on_page(client.get(f"/runs?per=50&sort=run&order=asc&page={page}").text)
    assert len(everything) == 302 and len(set(everything)) == 302  # every run once across the pages
    # past the last page: the last page
    assert _runs_on_page(client.get("/runs?per=50&sort=run&order=asc&page=99").text) == everything[300:]
    # filters: state, task, name substring (any case)
    failed = _runs_on_page(client.get("/runs?state=failed&per=200").text)
    assert failed and len(failed) == len([n for n in many if int(n.split("-")[1]) % 5 == 2])
    killed = client.get("/runs?state=killed&per=200")
    assert _runs_on_page(killed.text) and all(int(n.split("-")[1]) % 5 == 4 for n in _runs_on_page(killed.text))
    assert "killed" in killed.text
    regression = _runs_on_page(client.get("/runs?task=regression&per=200").text)
    assert regression and all(int(n.split("-")[1]) % 7 == 0 for n in regression)
    alpha = _runs_on_page(client.get("/runs?q=ALPHA-00&per=200").text)
    assert alpha and all(n.startswith("alpha-00") for n in alpha)
    # sort by the headline value, best first: accuracy i/1000 of completed runs, runs without a value last
    by_value = _runs_on_page(client.get("/runs?sort=value&order=desc&task=classification&state=completed&per=10&q=-20260101-").text)
    values = [int(n.split("-")[1]) for n in by_value]
    assert values == sorted(values, reverse=True) and values[0] == max(
        int(n.split("-")[1]) for n in many if int(n.split("-")[1]) % 5 == 0 and int(n.split("-")[1]) % 7
    )
    ascending = _runs_on_page(client.get("/runs?sort=fit_seconds&order=asc&state=completed&per=10&q=-20260101-").text)
    assert [int(n.split("-")[1]) for n in ascending] == sorted(int(n.split("-")[1]) for n in ascending)
    none = client.get("/runs?q=no-such-run")
    assert none.status_code == 200 and "No run matches" in none.text


def test_the_index_rereads_only_changed_folders(client_as, many, ui_app, ui_workspace):
    past = time.time() - 10  # folders changed in the last 2 s are read again (a write may be under way): age them
    for folder in ui_workspace["settings"].runs_dir.iterdir():
        os.utime(folder, (past, past))
    client = client_as("viewer")
    client.get("/runs")
    index = ui_app.state.runs_index
    before = index.reads
    client.get("/runs?page=2")
    assert index.reads == before  # nothing changed: nothing parsed again
    folder = ui_workspace["settings"].runs_dir / many[2]  # a failed run, now completed
    for name, body in (
        ("metrics.json", {"accuracy": 0.99}),
        ("status.json", {"state": "completed", "started": "2026-01-01T00:00:02+00:00"}),
    ):
        (folder / "new.tmp").write_text(json.dumps(body))  # renamed in, as the pipeline writes them
        os.replace(folder / "new.tmp", folder / name)
    page = client.get(f"/runs?q={many[2]}")
    assert index.reads == before + 1
    assert "finished" in page.text and "0.99" in page.text


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("page=0", "page"),
        ("per=1000", "per"),
        ("per=5", "per"),
        ("sort=evil", "sort"),
        ("order=sideways", "order"),
        ("state=bogus", "state"),
        ("task=x", "task"),
    ],
)
def test_bad_list_parameters_get_a_400_naming_the_field(client_as, query, field):
    page = client_as("viewer").get(f"/runs?{query}")
    assert page.status_code == 400
    assert field in page.text and "Traceback" not in page.text


def test_interrupted_and_failed_runs_are_shown_as_such(client_as, many):
    client = client_as("viewer")
    page = client.get("/runs?q=-0001-")  # alpha-0001: interrupted
    assert 'data-state="interrupted"' in page.text and "interrupted" in page.text
    page = client.get("/runs?q=-0002-")  # beta-0002: failed
    assert 'data-state="failed"' in page.text and "failed after 2 of 3 epochs" in page.text
    one = client.get(f"/runs/{many[2]}")
    assert one.status_code == 200 and 'data-testid="run-note"' in one.text and "failed" in one.text
    assert 'data-testid="no-report"' in one.text


def test_compare_two_runs_shows_both_with_curves_and_differences(client_as, ui_workspace):
    a, b = ui_workspace["runs"]
    page = client_as("viewer").get(f"/runs/compare?run={a}&run={b}")
    assert page.status_code == 200
    assert 'data-testid="compare-table"' in page.text and a in page.text and b in page.text
    assert 'data-testid="curves"' in page.text and 'data-chart="curve-0"' in page.text
    data = json.loads(re.search(r'<script type="application/json" id="curves-data">(.*?)</script>', page.text, re.S).group(1))
    losses = next(c for c in data["charts"] if c["metric"] == "val_loss")
    assert [s["label"] for s in losses["series"]] == [a, b]
    assert losses["x"][0] == 1 and len(losses["x"]) >= 4  # the longer run's epochs
    assert "/static/vendor/uPlot.iife.min.js" in page.text and "/static/charts.js" in page.text
    diff = page.text.split('data-testid="param-diff"', 1)[1]
    assert "model.hidden" in diff and "train.max_epochs" in diff and "data.source" not in diff  # only what differs
    assert "best" in page.text


def _scored_run(runs_dir: Path, name: str, source: str, accuracy: float) -> str:
    """A completed classification run on `source` whose test accuracy is `accuracy`."""
    folder = runs_dir / name
    folder.mkdir(parents=True)
    (folder / "status.json").write_text(json.dumps({"state": "completed", "dataset": source, "started": "2026-01-01T00:00:00+00:00"}))
    (folder / "spec.yaml").write_text(f"name: {name.split('-')[0]}\ntask: classification\ndata: {{source: '{source}'}}\n")
    (folder / "metrics.json").write_text(json.dumps({"accuracy": accuracy, "log_loss": 1 - accuracy, "n": 30}))
    return name


def _best_cells(html: str) -> int:
    return html.count('<span class="badge ok">best</span>')


def test_compare_marks_best_only_among_runs_on_the_same_data(client_as, ui_workspace):
    # Probe: a digits run's accuracy 0.98 was "best" against an iris run's 0.03.
    runs_dir = ui_workspace["settings"].runs_dir
    digits = _scored_run(runs_dir, "digits-a-20260101-000000", "builtin:digits", 0.98)
    iris = _scored_run(runs_dir, "iris-b-20260101-000000", "builtin:iris", 0.03)
    client = client_as("viewer")
    page = client.get(f"/runs/compare?run={digits}&run={iris}")
    assert page.status_code == 200
    assert _best_cells(page.text) == 0
    assert 'data-testid="compare-groups"' in page.text
    assert "classification on builtin:digits" in page.text and "classification on builtin:iris" in page.text
    # A second digits run: the better of the two digits runs is marked, per metric; the iris run never.
    other = _scored_run(runs_dir, "digits-c-20260101-000000", "builtin:digits", 0.90)
    page = client.get(f"/runs/compare?run={digits}&run={iris}&run={other}")
    table = page.text.split('data-testid="compare-table"', 1)[1].split("</table>", 1)[0]
    rows = {re.search(r'<th scope="row">(\w+)', r).group(1): r for r in table.split("<tr>") if r.startswith('<th scope="row">')}
    cells = re.findall(r"<td[^>]*>(.*?)</td>", rows["accuracy"])
    assert ["best" in c for c in cells] == [True, False, False]
    cells = re.findall(r"<td[^>]*>(.*?)</td>", rows["log_loss"])
    assert ["best" in c for c in cells] == [True, False, False]  # 0.02, lower is better


def test_the_list_links_no_chart_script(client_as):
    assert "uPlot" not in client_as("viewer").get("/runs").text


@pytest.mark.parametrize("count", [0, 1, 7])
def test_compare_needs_2_to_6_runs(client_as, many, count):
    query = "&".join(f"run={n}" for n in many[:count])
    page = client_as("viewer").get(f"/runs/compare?{query}")
    assert page.status_code == 400 and "run" in page.text and "2 to 6" in page.text


def test_compare_of_an_unknown_run_is_404(client_as, ui_workspace):
    page = client_as("viewer").get(f"/runs/compare?run={ui_workspace['runs'][0]}&run=nope-1")
    assert page.status_code == 404


def test_run_page_summary_links_and_model(client_as, ui_workspace):
    run = ui_workspace["runs"][0]
    page = client_as("viewer").get(f"/runs/{run}")
    assert page.status_code == 200
    assert f'href="/runs/{run}/report" data-testid="report-link"' in page.text
    assert f'href="/runs/{run}/card"' in page.text
    assert 'href="/models/iris-ui"' in page.text and "models:/iris-ui/" in page.text
    assert 'data-testid="run-summary"' in page.text and "How good" in page.text and "baseline" in page.text.lower()
    assert str(ui_workspace["settings"].home) not in page.text


def test_report_is_served_with_its_own_policy_and_no_script(client_as, ui_workspace):
    run = ui_workspace["runs"][0]
    client = client_as("viewer")
    rendered = client.get(f"/runs/{run}/report/raw")  # no report.html yet: rendered, not saved
    assert rendered.status_code == 200 and "<h2>Summary</h2>" in rendered.text
    assert not (ui_workspace["settings"].runs_dir / run / "report.html").exists()
    policy = rendered.headers["content-security-policy"]
    assert "script-src 'none'" in policy and "sandbox" in policy and "img-src data:" in policy
    assert "'unsafe-inline'" not in policy.split("script-src")[1].split(";")[0]
    # Framed by this site's report page only.
    assert "frame-ancestors 'self'" in policy and rendered.headers["x-frame-options"] == "SAMEORIGIN"
    assert rendered.headers["x-content-type-options"] == "nosniff"
    # A report.html in the folder is served as it is.
    (ui_workspace["settings"].runs_dir / run / "report.html").write_text("<html><body><h1>the file</h1></body></html>")
    served = client.get(f"/runs/{run}/report/raw")
    assert served.text == "<html><body><h1>the file</h1></body></html>"
    assert "script-src 'none'" in served.headers["content-security-policy"]


def test_report_page_frames_the_raw_report_inside_the_dashboard(client_as, ui_workspace):
    run = ui_workspace["runs"][0]
    page = client_as("viewer").get(f"/runs/{run}/report")
    assert page.status_code == 200
    assert f'<iframe class="report-frame" sandbox src="/runs/{run}/report/raw"' in page.text
    assert 'href="/runs"' in page.text and f'href="/runs/{run}"' in page.text  # a way back
    policy = page.headers["content-security-policy"]
    assert "frame-src 'self'" in policy and "frame-ancestors 'none'" in policy and page.headers["x-frame-options"] == "DENY"


def test_a_rendered_report_is_kept_until_the_run_changes(client_as, ui_workspace, monkeypatch):
    from trustforge import evaluate

    run = ui_workspace["runs"][0]
    calls = []
    real = evaluate.render_report

    def counting(folder, model_uri=None):
        calls.append(model_uri)
        return real(folder, model_uri)

    monkeypatch.setattr(evaluate, "render_report", counting)
    client = client_as("viewer")
    first = client.get(f"/runs/{run}/report/raw")
    again = client.get(f"/runs/{run}/report/raw")
    card = client.get(f"/runs/{run}/card")
    assert first.status_code == again.status_code == card.status_code == 200
    assert first.text == again.text and len(calls) == 1  # reload and card: no second render
    metrics = ui_workspace["settings"].runs_dir / run / "metrics.json"
    st = metrics.stat()
    os.utime(metrics, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert client.get(f"/runs/{run}/report/raw").status_code == 200 and len(calls) == 2


def test_report_and_card_name_the_registered_version(client_as, ui_workspace, ui_app):
    from trustforge import evaluate

    reg = ui_app.state.registry
    for run in ui_workspace["runs"]:
        row = evaluate.read_run_or_note(ui_workspace["settings"].runs_dir / run)
        versions = [v for v in reg.list_versions(row.get("name") or "") if v.run == run] if row.get("name") else []
        if versions and not row.get("model_uri"):
            client = client_as("viewer")
            assert versions[0].uri in client.get(f"/runs/{run}/report/raw").text
            card = client.get(f"/runs/{run}/card").text
            assert versions[0].uri in card and "not registered" not in card
            return
    pytest.skip("no run of the workspace has a registered version without a model_uri")


def test_card_is_escaped_text(client_as, ui_workspace):
    run = ui_workspace["runs"][0]
    (ui_workspace["settings"].runs_dir / run / "model_card.md").write_text("# Card\n<script>alert(1)</script>\n")
    page = client_as("viewer").get(f"/runs/{run}/card")
    assert page.status_code == 200 and 'data-testid="model-card"' in page.text
    assert "<script>alert(1)</script>" not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text


def test_unknown_run_is_a_404_page(client_as):
    page = client_as("viewer").get("/runs/no-such-run")
    assert page.status_code == 404 and "no such run" in page.text


@pytest.mark.parametrize(
    "path",
    [
        "/runs/..%2F..%2Fetc",
        "/runs/%2e%2e",
        "/runs/%2e%2e/report",
        "/runs/..%2F..%2Fetc%2Fpasswd/report",
        "/runs/.hidden",
        "/runs/a%00b",
        "/runs/a%00b/report",
        "/runs/%2Fetc%2Fpasswd/card",
        "/runs/compare?run=..%2F..%2Fetc&run=x",
        "/runs/compare?run=%2Fetc&run=%2Ftmp",
    ],
)
def test_traversal_attempts_are_refused(client_as, path):
    page = client_as("viewer").get(path)
    assert page.status_code in (400, 404)
    assert "root:" not in page.text and "<h2>Summary</h2>" not in page.text


def test_a_symlinked_run_folder_is_not_followed(client_as, ui_workspace, tmp_path):
    outside = tmp_path / "outside-run"
    outside.mkdir()
    (outside / "status.json").write_text(json.dumps({"state": "completed"}))
    (outside / "spec.yaml").write_text("name: secret-outside\n")
    (outside / "report.html").write_text("<p>outside the runs folder</p>")
    (outside / "model_card.md").write_text("outside card")
    (ui_workspace["settings"].runs_dir / "linked-run").symlink_to(outside, target_is_directory=True)
    client = client_as("viewer")
    for path in ("/runs/linked-run", "/runs/linked-run/report", "/runs/linked-run/card"):
        page = client.get(path)
        assert page.status_code == 404 and "outside" not in page.text
    assert "secret-outside" not in client.get("/runs").text  # not listed either


def test_a_linked_report_file_is_not_served(client_as, ui_workspace, tmp_path):
    run = ui_workspace["runs"][0]
    secret = tmp_path / "secret.html"
    secret.write_text("outside secret")
    (ui_workspace["settings"].runs_dir / run / "report.html").symlink_to(secret)
    client = client_as("viewer")
    for path in (f"/runs/{run}/report", f"/runs/{run}", f"/runs/compare?run={run}&run={ui_workspace['runs'][1]}"):
        page = client.get(path)
        assert page.status_code == 404 and "outside secret" not in page.text and "a symbolic link" in page.text
    listed = client.get("/runs")
    assert f'data-run="{run}" data-state="unreadable"' in listed.text  # listed, as a folder it cannot read


def test_runs_pages_need_a_session(client_as, ui_workspace):
    run = ui_workspace["runs"][0]
    for path in ("/runs", f"/runs/{run}", f"/runs/{run}/report", f"/runs/{run}/card", f"/runs/compare?run={run}&run={run}"):
        answer = client_as(None).get(path)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/signin")
