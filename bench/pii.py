"""Benchmark: TrustForge's PII detection beside Presidio's pattern recognisers, same corpus.

What it measures
    A labelled corpus of English and Chinese records (bench/_pii_corpus.py: names from Faker,
    checksummed emails, phones, Chinese mobiles, cards, IBANs, Chinese ID numbers, SSNs, IPs,
    and near-miss negatives; the detector never sees Faker's lists). Span match = overlap with
    the same type; micro-averaged precision, recall and F2, and per entity type.

    Presidio 2.2.366 runs its predefined recognisers for English with no NER model: the
    `NoOpNlpEngine` (no spaCy model downloaded or loaded), asked for the entity types scored
    here (so it does no work we do not score: the ratio quoted is against this, the faster
    way to run it; the rate with all its recognisers, as a plain `analyze` call runs them, is
    printed beside it). Its email recogniser's `tldextract` is pointed
    at the suffix list in the wheel, so nothing is downloaded at run time. Presidio has no
    Chinese-mobile type: for the side-by-side row CN_MOBILE counts as PHONE on both sides.

    Speed: records per second of CPU time of this process (`time.process_time`, one thread),
    the median of --repeats passes over the whole corpus, after one warm-up pass each (which
    loads the lexicons). The ratio ours / Presidio is the figure to quote (target >= 10x);
    both run in the same process, so a busy machine slows both.

How to run
    .venv/bin/python bench/pii.py [--records 1500] [--seed 0] [--repeats 3] [--json]
    The exit status is 0 whatever the result (a benchmark, not a test).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _pii_corpus import SCORED_TYPES, evaluate, make_corpus  # noqa: E402

# Presidio's names for the entity types scored here.
PRESIDIO_TYPES = {
    "PERSON": "PERSON",
    "EMAIL_ADDRESS": "EMAIL",
    "PHONE_NUMBER": "PHONE",
    "CREDIT_CARD": "CREDIT_CARD",
    "IBAN_CODE": "IBAN",
    "US_SSN": "US_SSN",
    "IP_ADDRESS": "IP_ADDRESS",
}
MERGE = {"CN_MOBILE": "PHONE"}


def presidio_engine():
    """Presidio's AnalyzerEngine with its pattern recognisers only, offline."""
    import types

    import tldextract
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine.no_op_nlp_engine import NoOpNlpEngine
    from presidio_analyzer.predefined_recognizers.generic import email_recognizer

    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
    # The default extractor fetches the public-suffix list over the network first; this one
    # reads the snapshot shipped in the tldextract wheel.
    offline = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)
    email_recognizer.tldextract = types.SimpleNamespace(extract=offline)
    nlp = NoOpNlpEngine(models=[{"lang_code": "en", "model_name": "none"}])
    nlp.load()
    registry = RecognizerRegistry(supported_languages=["en"])
    registry.load_predefined_recognizers(languages=["en"], nlp_engine=nlp)
    return AnalyzerEngine(registry=registry, nlp_engine=nlp, supported_languages=["en"])


def run_presidio(engine, texts: list[str], restrict: bool = True) -> list[list[tuple[str, int, int]]]:
    wanted = sorted(PRESIDIO_TYPES) if restrict else None
    out = []
    for text in texts:
        results = engine.analyze(text=text, language="en", entities=wanted)
        out.append([(PRESIDIO_TYPES[r.entity_type], r.start, r.end) for r in results if r.entity_type in PRESIDIO_TYPES])
    return out


def run_ours(texts: list[str]) -> list[list[tuple[str, int, int]]]:
    from trustforge.privacy import scan_text

    return [[(e.type, e.start, e.end) for e in scan_text(t)] for t in texts]


def timed(fn, texts: list[str], repeats: int) -> tuple[list, float]:
    """(predictions, median records per CPU second) after one warm-up pass."""
    preds = fn(texts)
    rates = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn(texts)
        rates.append(len(texts) / max(time.process_time() - t0, 1e-9))
    return preds, statistics.median(rates)


def measure(records: int = 1500, seed: int = 0, repeats: int = 3, presidio: bool = True) -> dict:
    """The figures of both systems on one corpus (what main prints)."""
    corpus = make_corpus(records, seed)
    texts = [r.text for r in corpus]
    ours_pred, ours_rate = timed(run_ours, texts, repeats)
    result = {
        "records": len(corpus),
        "spans": sum(len(r.spans) for r in corpus),
        "ours": {**evaluate(corpus, ours_pred), "records_per_s": ours_rate},
        "ours_merged": evaluate(corpus, ours_pred, merge=MERGE),
    }
    if presidio:
        engine = presidio_engine()
        pres_pred, pres_rate = timed(lambda t: run_presidio(engine, t), texts, repeats)
        result["presidio"] = {**evaluate(corpus, pres_pred, merge=MERGE), "records_per_s": pres_rate}
        result["speed_ratio"] = ours_rate / pres_rate
        # As a user would call it, every predefined recogniser (dates, URLs, bank numbers, ...): slower, for reference.
        _, all_rate = timed(lambda t: run_presidio(engine, t, restrict=False), texts, repeats)
        result["presidio_all_recognisers_records_per_s"] = all_rate
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    res = measure(args.records, args.seed, args.repeats)
    if args.json:
        print(json.dumps(res, indent=2, sort_keys=True))
        return
    print(f"corpus: {res['records']} records (English and Chinese), {res['spans']} labelled spans, seed {args.seed}")
    print(f"{'system':<44} {'precision':>9} {'recall':>7} {'F2':>6} {'records/s':>10}")
    ours, merged, pres = res["ours"], res["ours_merged"], res["presidio"]
    print(
        f"{'TrustForge (CN_MOBILE counted as PHONE)':<44} {merged['precision']:9.3f} {merged['recall']:7.3f} {merged['f2']:6.3f} {ours['records_per_s']:10.0f}"
    )
    print(
        f"{'Presidio 2.2.366, pattern recognisers only':<44} {pres['precision']:9.3f} {pres['recall']:7.3f} {pres['f2']:6.3f} {pres['records_per_s']:10.0f}"
    )
    print(f"speed ratio TrustForge / Presidio: {res['speed_ratio']:.1f}x (target >= 10x; >= 5,000 records/s)")
    all_rate = res["presidio_all_recognisers_records_per_s"]
    print(
        f"(Presidio with all its pattern recognisers, not only the scored types: {all_rate:.0f} records/s, ratio {ours['records_per_s'] / all_rate:.1f}x)"
    )
    print(
        f"TrustForge, all {len(SCORED_TYPES)} types apart: precision {ours['precision']:.3f} recall {ours['recall']:.3f} F2 {ours['f2']:.3f}"
    )
    print(f"{'entity type':<12} {'support':>7} {'P ours':>7} {'R ours':>7} {'P Presidio':>11} {'R Presidio':>11}")
    for kind in SCORED_TYPES:
        o = ours["per_type"][kind]
        p = pres["per_type"].get(MERGE.get(kind, kind), {})
        note = " (as PHONE)" if kind in MERGE else ""
        print(
            f"{kind:<12} {o['support']:>7} {o['precision']:7.3f} {o['recall']:7.3f} {p.get('precision', 0):11.3f} {p.get('recall', 0):11.3f}{note}"
        )


if __name__ == "__main__":
    main()
