"""Recommendation, end to end: `examples/recommend_explicit.yaml` from the command line and
`examples/recommend_implicit.yaml` through the Python API train (with CI settings: fewer epochs),
package, verify, load, predict, recommend and beat their same-run baselines; unknown users and
items get the documented fallback. The full settings (the README's figures) run as slow tests."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from _cli import run_main
from _figures import assert_near_readme

import trustforge
from trustforge.data import _interactions as inter
from trustforge.data import prepare
from trustforge.errors import DataError

ROOT = Path(__file__).resolve().parents[1]
EXPLICIT = ROOT / "examples" / "recommend_explicit.yaml"
IMPLICIT = ROOT / "examples" / "recommend_implicit.yaml"
# CI settings: the examples as written, cut to the epochs where they already beat their baselines.
CI_EPOCHS = {EXPLICIT: 6, IMPLICIT: 12}


def ci_spec(path: Path) -> dict:
    raw = yaml.safe_load(path.read_text())
    raw["train"]["max_epochs"] = CI_EPOCHS[path]
    return raw


def one_line_error(result: tuple[int, str, str], *names: str) -> None:
    code, out, err = result
    assert code != 0 and len(err.splitlines()) == 1 and err.startswith("error: "), result
    assert "internal error" not in err and "Traceback" not in out + err
    for name in names:
        assert name in err, (name, err)


@pytest.mark.slow  # about 30 s on two cores: the example, 6 epochs, then predict, top-K and evaluate
def test_explicit_example_trains_from_the_cli_and_serves_ratings(tmp_path, workspace):
    spec = tmp_path / "recommend_explicit.yaml"
    spec.write_text(yaml.safe_dump(ci_spec(EXPLICIT)))
    code, out, err = run_main("train", "-q", spec, home=workspace)
    assert code == 0, out + err
    assert "baseline_bias_rmse" in out and "models:/movielens-mf/1" in out
    package = Path(re.search(r"package: (\S+)", out).group(1))
    metrics = json.loads((package.parent / "metrics.json").read_text())
    assert metrics["rmse"] < metrics["baseline_bias_rmse"], metrics  # MF beats global + user + item biases
    assert metrics["n"] > 19_000 and metrics["unknown_items"] > 0

    code, out, _ = run_main("package", "verify", package, home=workspace)
    assert code == 0 and "verified" in out

    model = trustforge.Model.load(package)
    manifest = model.manifest
    assert [(i["name"], i["role"], i["datatype"]) for i in manifest["signature"]["inputs"]] == [
        ("userId", "user", "BYTES"),
        ("movieId", "item", "BYTES"),
    ]
    test = prepare(trustforge.load_spec(spec)).test_raw
    user, item = test.frame.userId.iloc[0], test.frame.movieId.iloc[0]
    popular = model.preprocessor.vocabularies["movieId"][int(np.argmax(model.preprocessor.input_state.popularity.numpy()))]
    pairs = pd.DataFrame({"userId": [user, 999_999, user, "nobody"], "movieId": [item, popular, "no-such-movie", "none"]})
    pairs.to_csv(tmp_path / "pairs.csv", index=False)
    code, out, err = run_main("predict", package, tmp_path / "pairs.csv", "-o", tmp_path / "ratings.csv", home=workspace)
    assert code == 0, err
    got = pd.read_csv(tmp_path / "ratings.csv", keep_default_na=False)
    assert list(got.columns) == ["prediction", "unknown"]
    assert list(got.unknown) == ["", "user", "item", "user+item"]
    assert ((got.prediction >= 0.5) & (got.prediction <= 5.0)).all()
    # The documented fallback: an unknown user is rated μ + b_item, an unknown item μ + b_user, both μ.
    net, pre = model.module, model.preprocessor
    mean = float(pre.tensors["target.mean"])
    u = pre.vocabularies["userId"].index(str(user))
    i = pre.vocabularies["movieId"].index(str(popular))
    with torch.no_grad():
        expect = [
            mean + float(net.global_bias + net.item_bias.weight[i]),
            mean + float(net.global_bias + net.user_bias.weight[u]),
            mean + float(net.global_bias),
        ]
    np.testing.assert_allclose(got.prediction[1:], np.clip(expect, 0.5, 5.0), rtol=1e-5)

    pd.DataFrame({"userId": [user, "nobody"]}).to_csv(tmp_path / "users.csv", index=False)
    code, out, err = run_main("predict", package, tmp_path / "users.csv", "--top-k", "5", "-o", tmp_path / "top.csv", home=workspace)
    assert code == 0, err
    top = pd.read_csv(tmp_path / "top.csv", dtype={"userId": str, "movieId": str})
    assert list(top.columns) == ["userId", "rank", "movieId", "score", "source"]
    assert list(top["rank"]) == [1, 2, 3, 4, 5] * 2 and list(top.source) == ["model"] * 5 + ["popularity"] * 5
    assert top.score[:5].is_monotonic_decreasing and top.score[5:].isna().all()
    stride = len(pre.vocabularies["movieId"])
    known = set(inter.known_keys(pre).tolist())
    assert not {u * stride + pre.vocabularies["movieId"].index(m) for m in top.movieId[:5]} & known  # nothing already rated

    code, out, err = run_main("evaluate", package, spec, home=workspace)
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1])["rmse"] == pytest.approx(metrics["rmse"], abs=1e-9)

    one_line_error(run_main("predict", package, tmp_path / "users.csv", "-o", tmp_path / "x.csv", home=workspace), "movieId")
    one_line_error(run_main("predict", package, tmp_path / "pairs.csv", "--top-k", "0", home=workspace), "--top-k")


@pytest.mark.slow  # about 30 s on two cores: the example, 12 epochs, then evaluate, recommend and report
def test_implicit_example_trains_through_the_python_api_and_ranks_above_popularity(workspace):
    raw = ci_spec(IMPLICIT)
    result = trustforge.run(raw, progress=False)
    m = result.metrics
    assert m["n"] > 3000 and m["skipped_unknown"] > 0
    assert m["hr@10"] > m["baseline_popularity_hr@10"], m
    assert m["ndcg@10"] > m["baseline_popularity_ndcg@10"], m
    assert m["auc"] > m["baseline_popularity_auc"], m

    model = result.load_model()  # verified (signature, digests) before it is parsed
    spec = trustforge.load_spec(raw)
    again = model.evaluate(prepare(spec).test_raw)  # the package alone reproduces the run's figures
    for k in ("hr@10", "ndcg@10", "auc", "n", "baseline_popularity_hr@10", "baseline_popularity_ndcg@10"):
        assert again[k] == pytest.approx(m[k], abs=1e-12), k

    pre = model.preprocessor
    users = pre.vocabularies["userId"][1:4]
    recs = model.recommend([*users, "a-new-user"], k=10)
    assert len(recs) == 40 and set(recs.source) == {"model", "popularity"}
    stride = len(pre.vocabularies["movieId"])
    known = set(inter.known_keys(pre).tolist())
    for uid, rows in recs[recs.source == "model"].groupby("userId"):
        u = pre.vocabularies["userId"].index(uid)
        assert not {u * stride + pre.vocabularies["movieId"].index(x) for x in rows.movieId} & known
    popularity = pre.input_state.popularity.numpy()
    counts = [popularity[pre.vocabularies["movieId"].index(x)] for x in recs[recs.source == "popularity"].movieId]
    assert counts == sorted(popularity[1:], reverse=True)[:10]
    with_known = model.recommend(users[:1], k=10, exclude_known=False)
    assert len(with_known) == 10

    scores = model.predict(pd.DataFrame({"userId": [users[0], users[0]], "movieId": [recs.movieId[0], "not-a-movie"]}))
    assert scores.unknown.tolist() == ["", "item"]
    assert scores.prediction[0] == pytest.approx(recs.score[0], rel=1e-6)

    evidence = json.loads((result.run_dir / "evidence.json").read_text())
    assert set(evidence["skipped"]) == {
        "calibration",
        "corruptions",
        "explanations",
        "robustness",
        "privacy_audit",
    }  # ids: no gradient path, no row-level loss
    assert evidence["speed"]["parameters"] == model.manifest["model"]["parameters"]
    from trustforge.evaluate import write_report

    assert "ndcg@10" in write_report(result.run_dir).read_text()

    with pytest.raises(DataError, match="k must be an integer >= 1"):
        model.recommend(users, k=0)
    with pytest.raises(DataError, match="no users given"):
        model.recommend([], k=3)
    with pytest.raises(DataError, match=r"Model.recommend\(users\): must be user ids .* got NoneType"):
        model.recommend(None, 2)  # a probe: a bare TypeError


@pytest.mark.parametrize(
    "change, where",
    [
        ({"data": {"source": "csv:ratings.csv"}}, "data.interactions is required"),
        ({"data": {"split": {"test": 0.3}}}, "data.split does not apply"),
        ({"data": {"target": "rating"}}, "data.target does not apply"),
        ({"data": {"interactions": {"test": 1.5}}}, "data.interactions.test must be a whole number"),
        ({"data": {"interactions": {"feedback": "explicit", "rating": None}}}, "data.interactions.rating must name the rating column"),
        ({"data": {"interactions": {"positive_threshold": 4}}}, "data.interactions.positive_threshold needs feedback implicit"),
        ({"data": {"interactions": {"item": "userId"}}}, "must name different columns"),
        ({"train": {"loss": "bpr"}}, "train.loss must be auto or mse for explicit feedback"),
        ({"train": {"early_stopping": {"monitor": "val_auc"}}}, "train.early_stopping.monitor must be val_loss or val_<metric>"),
        ({"data": {"interactions": {"validation": 0}}}, "data.interactions.validation must be > 0 while train.early_stopping"),
        ({"evaluate": {"metrics": ["hr@10"]}}, "evaluate.metrics[0] must be a recommendation metric"),
        ({"task": "classification"}, "data.interactions applies to task recommendation only"),
        ({"task": "classification", "data": {"interactions": None}}, "model.kind 'mf' is a recommender"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_spec_errors_name_the_field(change, where):
    from trustforge.errors import SpecError

    raw = ci_spec(EXPLICIT)
    for section, values in change.items():
        if isinstance(values, dict):
            for key, value in values.items():
                part = raw.setdefault(section, {})
                part[key] = {**part[key], **value} if isinstance(value, dict) and isinstance(part.get(key), dict) else value
        else:
            raw[section] = values
    if "source" in change.get("data", {}):
        del raw["data"]["interactions"]
    with pytest.raises(SpecError, match=re.escape(where)):
        trustforge.load_spec(raw)


def test_the_smallest_recommendation_spec_uses_the_builtin_columns_and_mf():
    spec = trustforge.load_spec(
        {"task": "recommendation", "data": {"source": "builtin:movielens_small", "interactions": {"feedback": "implicit"}}}
    )
    r = spec.data.interactions
    assert (r.user, r.item, r.rating, r.time, r.feedback, r.test) == ("userId", "movieId", "rating", "timestamp", "implicit", 1)
    assert spec.model.kind == "mf"
    assert spec.default_metrics()[:2] == ["hr@10", "baseline_popularity_hr@10"]


def test_a_spec_that_does_not_fit_recommendation_is_one_line(tmp_path, workspace):
    bad = ci_spec(EXPLICIT)
    bad["model"] = {"kind": "cnn"}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    one_line_error(run_main("validate", path, home=workspace), "model.kind", "mf or two_tower")
    bad = ci_spec(IMPLICIT)
    bad["data"]["interactions"]["item"] = "movie"
    path.write_text(yaml.safe_dump(bad))
    one_line_error(run_main("train", "-q", path, home=workspace), "data.interactions.item", "'movie'")
    assert not (workspace / "runs").exists() or not any((workspace / "runs").iterdir())


@pytest.mark.slow
@pytest.mark.parametrize("path", [EXPLICIT, IMPLICIT], ids=lambda p: p.stem)
def test_full_settings_beat_their_baselines(path, workspace):
    """The examples as written (the README's figures): the model beats its same-split baseline."""
    m = trustforge.run(path, progress=False, register=False).metrics
    if path == EXPLICIT:
        assert_near_readme("recommend_explicit.yaml", m)
        assert m["rmse"] < m["baseline_bias_rmse"] - 0.003, m
    else:
        assert_near_readme("recommend_implicit.yaml", m)
        assert m["hr@10"] > m["baseline_popularity_hr@10"] + 0.005, m
        assert m["ndcg@10"] > m["baseline_popularity_ndcg@10"] + 0.002, m


def test_top_k_answers_a_user_listed_twice_once(tmp_path, workspace):
    """An interaction log's user column lists a user once per rating: `--top-k` wrote the same
    list again for each, so (user, rank) was no longer one row. One list each, first-listed
    order, and a note of the repeats left out."""
    import sys

    sys.path.insert(0, str(ROOT / "tests" / "evaluate"))
    from test_robustness import recommender_spec

    result = trustforge.run(recommender_spec(tmp_path), progress=False)
    pd.DataFrame({"user": ["3", "5", "3", "5", "nobody", "nobody"]}).to_csv(tmp_path / "users.csv", index=False)
    code, out, err = run_main("predict", result.package, tmp_path / "users.csv", "--top-k", "2", "-o", tmp_path / "top.csv", home=workspace)
    assert code == 0 and err.strip() == "note: 3 repeated user ids in users.csv left out: each user gets one list", err
    top = pd.read_csv(tmp_path / "top.csv", dtype={"user": str})
    assert list(top.user) == ["3", "3", "5", "5", "nobody", "nobody"] and list(top["rank"]) == [1, 2] * 3
    recs = result.load_model().recommend([3, 3], k=2)
    assert list(recs.user) == ["3", "3"] and recs.attrs["repeated_users"] == 1
