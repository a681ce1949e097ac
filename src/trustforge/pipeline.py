"""The whole life of a task in one place: spec → data → model → train → evaluate → package.

`run(spec)` is the only function that wires the stages together. Each stage takes the typed
result of the one before and knows nothing of the ones after.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from trustforge import evaluate, secure
from trustforge._fs import PRIVATE_DIR, make_private, private_dir
from trustforge.data import Prepared, masking_key, needs_masking_key, prepare, prepare_key, redact_source, renamed_in_spec
from trustforge.errors import RunError, SpecError, TrustForgeError
from trustforge.evaluate import task_of
from trustforge.models import build_model, output_size
from trustforge.monitor import run_ood, run_reference
from trustforge.package import Model, seal_run_package, write_model_package
from trustforge.registry import Registry
from trustforge.secure import Keyring
from trustforge.settings import Settings
from trustforge.spec import FITTED_KINDS, TaskSpec, load_spec, located, spec_digest, spec_to_yaml, written_spec
from trustforge.train import (
    Callback,
    Distributed,
    DistributedStep,
    Trainer,
    apply_threads,
    atomic_write_text,
    check_adversarial,
    clean_labels,
    fit_members,
    init_distributed,
    load_checkpoint,
    resolve_device,
    restores_threads,
    seeded,
    shutdown_distributed,
)

__all__ = ["run", "RunResult", "find_resumable_run"]

_STATUS = "status.json"


@dataclass
class RunResult:
    """What a run produced.

    Attributes:
        run_dir: the run's folder in the workspace.
        package: the model package folder.
        metrics: the full test metrics.
        history: one dict of logs per epoch.
        spec: the normalised spec.
        model_uri: `models:/NAME/VERSION` when the package was registered, else None.
    """

    run_dir: Path
    package: Path
    metrics: dict[str, Any]
    history: list[dict[str, float]]
    spec: TaskSpec
    timings: dict[str, float] = field(default_factory=dict)
    model_uri: str | None = None
    keyring: Keyring | None = field(default=None, repr=False)

    def load_model(self) -> Model:
        """The trained model, loaded back from its verified (signature-checked) package."""
        return Model.load(self.package, keyring=self.keyring)


def run(
    spec: TaskSpec | Mapping[str, Any] | str | os.PathLike[str],
    *,
    settings: Settings | None = None,
    resume: bool = False,
    callbacks: Sequence[Callback] = (),
    progress: bool = True,
    register: bool = True,
    threads: int | None = None,
    lineage: Mapping[str, Any] | None = None,
    selection: Mapping[str, Any] | None = None,
    distributed: Distributed | None = None,
    prepared: Prepared | None = None,
) -> RunResult | None:
    """Train, evaluate, package, sign and register one spec.

    Args:
        spec: a `TaskSpec`, a mapping, or a path to a YAML spec.
        settings: workspace settings (default: from the environment).
        resume: continue the latest interrupted run of this spec instead of starting anew.
        callbacks: extra trainer callbacks, called after the built-in ones.
        progress: show the progress bar.
        register: store the signed package in the workspace registry as the next version of
            the spec's name (encrypted at rest); the acting principal needs the `register` role.
        threads: torch CPU threads for this run (training and evidence), over the spec's
            `train.threads`; both None: chosen by `train.choose_threads`. Torch's setting is
            restored when the run ends.
        lineage: more lineage for the package's signed manifest (the tuner's study and trial).
        selection: how `model.kind: auto` chose this spec's model (`automl.choose`'s leaderboard
            and verdict), kept in metrics.json (`model_choice`), the manifest and leaderboard.json.
        distributed: this process's place in a data-parallel launch (`train.distributed_from_env`
            under torchrun): every process trains its shard through `DistributedStep`; rank 0
            alone writes the run folder, checkpoints, package and registry entry and returns the
            result, the other ranks return None once training ends. `resume` needs every node to
            see the same workspace (each process reads the checkpoint).
        prepared: this spec's data, prepared already (`data.prepare`; `model.kind auto` prepares
            once for its choice and this run): used instead of preparing again. Refused
            (ValueError) unless it was prepared from a spec with this spec's `data.prepare_key`;
            not with `distributed`.

    Raises:
        TrustForgeError: bad spec, bad data, a model that does not fit the data, a principal
            that may not register, a failed resume. Nothing is left behind for errors found
            before training starts.
    """
    for name, flag in (("resume", resume), ("progress", progress), ("register", register)):
        if not isinstance(flag, bool):  # a truthy string ("no") would register, resume or print
            raise SpecError(f"run({name}=...): must be True or False; got {type(flag).__name__} {flag!r}"[:200])
    source, spec = spec, load_spec(spec)
    settings = settings or Settings.from_env()
    digest = spec_digest(spec)
    if prepared is not None and (distributed is not None or prepared.prepared_from != prepare_key(spec)):
        why = (
            "a data-parallel run prepares its own" if distributed is not None else "it was prepared from another task, data section or seed"
        )
        raise ValueError(f"run(prepared=...): refused, {why}")
    with located(source):  # a field the data refuses (train.privacy.delta) is named at its line of the spec file
        if distributed is not None:
            return _run_distributed(spec, settings, digest, distributed, resume, callbacks, progress, register, threads)
        if not register:
            keyring = Keyring.load_or_init(settings.keys_dir, kek_b64=settings.kek)
            return _run(spec, settings, digest, keyring, None, resume, callbacks, progress, threads, lineage, selection, prepared=prepared)
        with Registry(settings) as registry:
            # Refuse (and audit) a principal who may not register before spending time on training.
            secure.require(registry.principal, "register", f"models:/{spec.name}", registry.audit)
            return _run(
                spec,
                settings,
                digest,
                registry.keyring,
                registry,
                resume,
                callbacks,
                progress,
                threads,
                lineage,
                selection,
                prepared=prepared,
            )


def _run_distributed(
    spec: TaskSpec,
    settings: Settings,
    digest: str,
    distributed: Distributed,
    resume: bool,
    callbacks: Sequence[Callback],
    progress: bool,
    register: bool,
    threads: int | None,
) -> RunResult | None:
    """One process of a data-parallel run: join the group, train; rank 0 also does the rest."""
    if spec.train.privacy is not None or spec.train.adversarial is not None:
        which = "privacy" if spec.train.privacy is not None else "adversarial"
        raise SpecError(
            f"train.{which} cannot be combined with data-parallel training (--nproc-per-node / torchrun) yet; train in one process"
        )
    if spec.model.kind in FITTED_KINDS:
        raise SpecError(f"model.kind {spec.model.kind!r} is fitted by its own solver, not data-parallel; train it in one process")
    if spec.model.kind == "ensemble":
        raise SpecError("model.kind 'ensemble' trains its members one after another, not data-parallel; train it in one process")
    device = resolve_device(spec.train.accelerator, distributed.local_rank)
    init_distributed(distributed, device)
    try:
        if not distributed.is_main:
            # Only rank 0 opens the registry or creates keys; another rank reads the workspace's keys
            # only when it needs the PII masking key (the same data on every rank).
            keyring = Keyring.load_or_init(settings.keys_dir, kek_b64=settings.kek) if needs_masking_key(spec.data.protect.pii) else None
            return _run(spec, settings, digest, keyring, None, resume, callbacks, False, threads, distributed=distributed, device=device)
        if not register:
            keyring = Keyring.load_or_init(settings.keys_dir, kek_b64=settings.kek)
            return _run(spec, settings, digest, keyring, None, resume, callbacks, progress, threads, distributed=distributed, device=device)
        with Registry(settings) as registry:
            secure.require(registry.principal, "register", f"models:/{spec.name}", registry.audit)
            return _run(
                spec,
                settings,
                digest,
                registry.keyring,
                registry,
                resume,
                callbacks,
                progress,
                threads,
                distributed=distributed,
                device=device,
            )
    finally:
        shutdown_distributed()


def _creator(settings: Settings, registry: Registry | None) -> str:
    """The package's `lineage.created_by`: the acting principal's lineage name (a TrustForge user
    name, or `local-admin`, never the OS login). A run that does not register checks no token:
    then `token` says one was set without naming an unverified user."""
    if registry is not None:
        return registry.principal.lineage_name
    return "local-admin" if settings.token is None else "token"


def stage_checks_for(spec: TaskSpec) -> Callable[[Any, Any, int, Sequence[str]], None]:
    """What train refuses before fitting once the inputs are known, for `data.validate_data`
    (which may not import the later stages): `evaluate.robustness` and `train.adversarial` against
    the fitted inputs, the privacy accountant's plan over the n training rows, and `evaluate.positive_class` /
    `evaluate.threshold` against the data's classes, by the functions train calls."""

    def check(pre: Any, train_raw: Any, n_train: int, classes: Sequence[str]) -> None:
        if pre is not None:
            evaluate.check_robustness_settings(spec, pre, train_raw)
        if spec.train.privacy is not None:  # delta, epsilon, noise_multiplier
            from trustforge.train import private_step_of

            private_step_of(spec.train, n_train)
        if pre is not None:  # train.adversarial: inputs to move, an epsilon within their largest budget
            check_adversarial(spec, pre, train_raw)
        task = task_of(spec)
        if isinstance(task, evaluate.Classification):  # the trainer's first question (Classification.validation_metrics)
            task.check_decision(spec, list(classes or ()))

    return check


def _stopped(run_dir: Path, digest: str) -> None:
    """A run stopped from outside: keep its folder as interrupted (resumable) when there is a
    checkpoint to resume from, else remove it."""
    if (run_dir / "checkpoints" / "last.safetensors").exists():
        _write_status(run_dir, "interrupted", digest)
    else:
        shutil.rmtree(run_dir, ignore_errors=True)


@restores_threads
def _run(
    spec: TaskSpec,
    settings: Settings,
    digest: str,
    keyring: Keyring,
    registry: Registry | None,
    resume: bool,
    callbacks: Sequence[Callback],
    progress: bool,
    threads: int | None = None,
    lineage: Mapping[str, Any] | None = None,
    selection: Mapping[str, Any] | None = None,
    *,
    distributed: Distributed | None = None,
    device: Any = None,
    prepared: Prepared | None = None,
) -> RunResult | None:
    writes = distributed is None or distributed.is_main  # a data-parallel run's other ranks write nothing
    run_dir: Path | None = None
    resume_from = None
    if resume:
        run_dir = find_resumable_run(settings, spec.name, digest)
        resume_from = load_checkpoint(run_dir / "checkpoints")

    # Data errors surface here, before any folder exists; personal data is masked (data.protect) before anything is fitted.
    data = (
        prepared
        if prepared is not None
        else prepare(
            spec,
            cache_dir=settings.cache_dir if writes else None,
            key=masking_key(keyring) if needs_masking_key(spec.data.protect.pii) else None,
        )
    )
    # What the run writes names a personal header as data.protect renamed its column, never as the user's spec wrote it.
    spec = renamed_in_spec(spec, data.renamed)
    # evaluate.robustness against these inputs, before training rather than after it (`validate` runs the same check).
    evaluate.check_robustness_settings(spec, data.preprocessor, data.test_raw)
    check_adversarial(spec, data.preprocessor, data.test_raw)  # train.adversarial likewise
    timings: dict[str, Any] = {"prepare_seconds": data.prepare_seconds}
    n_out = output_size(spec, data.schema)
    with seeded(spec.train.seed):
        model = build_model(spec, data.schema)  # model errors surface here, before any folder exists
    timings["threads"] = apply_threads(spec.train.threads if threads is None else threads, model, from_env=settings.threads_from_env)
    data, label_issues = clean_labels(spec, data, task_of(spec))  # data.clean.label_issues: find, then report, drop or relabel

    if distributed is not None and not distributed.is_main:
        return _train_rank(spec, data, model, callbacks, resume_from, distributed, device)
    if not resume:
        run_dir = _new_run_dir(settings, spec.name)
        # Its data paths as written, relative to the run folder: loaded as a spec file it reads the same data.
        atomic_write_text(run_dir / "spec.yaml", spec_to_yaml(written_spec(spec, run_dir)))
    if label_issues is not None:
        atomic_write_text(run_dir / "label_issues.json", json.dumps(label_issues, indent=1))
    if data.profile is not None:  # the data profile: columns, target, duplicates, leakage (data._profile)
        atomic_write_text(run_dir / "profile.json", json.dumps(data.profile, indent=1))
    # The pid lets `trustforge runs list` tell a live run from one whose process was killed
    # before it could say so (SIGKILL, power loss); SIGTERM and Ctrl-C mark it interrupted below.
    # What the run listings show (`evaluate._compare.read_run`), recorded so that they read it
    # without importing the data layer and the task (and torch): the data source as it may be
    # shown, and the figure the task ranks runs by (again with the metrics at the end).
    listing = {"dataset": redact_source(str(spec.data.source)), "leaderboard_metric": task_of(spec).leaderboard_metric({})}
    _write_status(run_dir, "running", digest, pid=os.getpid(), **listing)
    try:
        trainer = Trainer.from_spec(
            spec,
            data,
            task_of(spec),
            run_dir=run_dir,
            callbacks=callbacks,
            progress=progress,
            resume_meta=resume_from[0] if resume_from else None,
            step=DistributedStep(distributed, device) if distributed is not None else None,
            local_rank=distributed.local_rank if distributed is not None else None,
        )
        members = None
        if spec.model.kind in FITTED_KINDS:  # a baseline, fitted by its own solver (evaluate.fit_fitted), not by epochs
            history = _fit_baseline(spec, data, model, trainer)
        elif spec.model.kind == "ensemble":  # its members, trained one after another
            history, members = _fit_ensemble(spec, data, model, trainer, run_dir, callbacks, progress)
        else:
            history = trainer.fit(model, data.train, data.validation, resume=resume_from)
        timings["fit_seconds"] = trainer.fit_seconds
        if distributed is not None:
            shutdown_distributed(together=True)  # training is over: every rank leaves at once; the rest is rank 0's
        twin, twin_metrics = _plain_twin(spec, data, history)  # adversarial or private training's "before"
        if twin is not None:
            timings["plain_twin_fit_seconds"] = twin_metrics["plain_twin_fit_seconds"]

        val_out = trainer.predict(data.validation.inputs, mixed_precision=False) if data.validation is not None else None
        scored = evaluate.evaluate_test(spec, data, model, trainer.predict(data.test.inputs, mixed_precision=False), val_out)
        # From here the network is packaged and measured on the CPU: its weights are saved as CPU
        # tensors, so a package trained on a GPU loads and predicts on a machine without one.
        model.to("cpu")
        metrics = {**scored.metrics, **trainer.summary(history), **twin_metrics, **data.evidence()}
        if members is not None:  # model.kind ensemble: what each member's training reported
            metrics["ensemble"] = members
        if selection is not None:  # model.kind auto: the candidates' leaderboard (validation scores only)
            metrics["model_choice"] = dict(selection)
            atomic_write_text(run_dir / "leaderboard.json", json.dumps(dict(selection), indent=1))
        if data.expect_report is not None:  # declared data.expect rules: what training data broke, per column
            metrics.update(data.expect_report.metrics())
            atomic_write_text(run_dir / "expectations.json", json.dumps(data.expect_report.to_json("training data"), indent=1))
        atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=1))

        package = run_dir / "package"
        if package.exists():  # a resumed run that was interrupted after packaging
            shutil.rmtree(package)

        # The drift reference's predictions, as the package serves them (temperature, threshold):
        # the validation split's, else the training split's; never the test split's.
        def predict_train() -> Any:
            out = trainer.predict(data.train.inputs, mixed_precision=False)
            return out / scored.temperature if scored.temperature is not None else out

        reference = run_reference(data, scored.held_out[0], predict_train, scored.decision) if spec.monitor.reference else None
        ood = run_ood(spec, data, model)  # the out-of-distribution detector, on the trained network (None: turned off)
        write_model_package(
            package,
            spec,
            data,
            model,
            metrics,
            run=run_dir.name,
            spec_digest=digest,
            n_out=n_out,
            keyring=keyring,
            calibration=scored.manifest_entry(),
            reference=reference,
            decision=scored.decision,
            ood=ood,
            lineage=dict(lineage) if lineage else None,
            created_by=_creator(settings, registry),
        )
        # The rest of the evidence is measured on the model as its verified package serves it.
        packaged = Model.load(package, keyring=keyring)
        with seeded(spec.train.seed):  # whatever draws from torch's generator leaves the caller's alone
            evidence = evaluate.gather(
                spec,
                data,
                packaged,
                run_dir=run_dir,
                package=package,
                calib=scored.calibration,
                fit_seconds=trainer.fit_seconds,
                epochs=len(history),
                metric=task_of(spec).headline_metric(spec),
                baseline_module=twin,
            )
        metrics = scored.with_evidence(metrics, evidence)
        atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=1))
        model_uri = None
        if registry is not None:
            model_uri = registry.register(package, run=run_dir.name).uri
        if spec.data.protect.seal_run or settings.seal_runs:  # the run's package encrypted at rest too
            seal_run_package(run_dir, keyring)
    except TrustForgeError as exc:
        if getattr(exc, "keeps_run", False) and (run_dir / "checkpoints" / "last.safetensors").exists():
            _write_status(run_dir, "interrupted", digest)  # a data-parallel peer was lost: resumable
        elif resume_from is None:
            shutil.rmtree(run_dir, ignore_errors=True)
        else:  # keep what the interrupted run had produced; it is evidence of what happened
            _write_status(run_dir, "failed", digest)
        raise
    except Exception as exc:
        if isinstance(exc, (OSError, MemoryError)):  # the machine (a full disk, memory): as an interrupt
            _stopped(run_dir, digest)
        else:
            # A bug (neither bad input, nor the machine, nor an interrupt): the run failed, and its
            # folder is kept as evidence; `runs list` must not offer it as interrupted and resumable.
            _write_status(run_dir, "failed", digest)
        raise
    except BaseException:  # interrupted (Ctrl-C, kill), in training or after
        _stopped(run_dir, digest)
        raise
    _write_status(run_dir, "completed", digest, model_uri=model_uri, leaderboard_metric=task_of(spec).leaderboard_metric(metrics))
    return RunResult(run_dir, package, metrics, history, spec, timings, model_uri, keyring)


def _fit_baseline(spec: TaskSpec, data: Any, model: Any, trainer: Trainer) -> list[dict[str, float]]:
    """Fit a baseline model kind (linear, hist_gradient_boosting) in place; no epochs (an empty history).

    The trainer is handed the fitted module, so predictions and the summary read it as they read a trained one.
    """
    fitted = evaluate.fit_fitted(spec, data, model)
    trainer.model, trainer.fit_seconds = model, fitted["fit_seconds"]
    return []


def _fit_ensemble(
    spec: TaskSpec, data: Any, model: Any, trainer: Trainer, run_dir: Path, callbacks: Sequence[Callback], progress: bool
) -> tuple[list[dict[str, float]], list[dict[str, Any]]]:
    """Train the members of `model.kind: ensemble` in place (`train.fit_members`); their epochs go to
    `epochs.csv`, a `member` column first. The trainer is handed the ensemble, so predictions and
    the summary read it as they read one trained network."""
    history, members, seconds = fit_members(
        spec, data, model, task_of(spec), callbacks=callbacks, progress=progress, log=run_dir / "epochs.csv"
    )
    trainer.model, trainer.fit_seconds = model, seconds
    return history, members


def _train_rank(
    spec: TaskSpec, data: Any, model: Any, callbacks: Sequence[Callback], resume_from: Any, distributed: Distributed, device: Any
) -> None:
    """A data-parallel rank other than 0: train its shard in step with the others, write nothing."""
    trainer = Trainer.from_spec(
        spec,
        data,
        task_of(spec),
        run_dir=None,
        callbacks=callbacks,
        progress=False,
        resume_meta=resume_from[0] if resume_from else None,
        step=DistributedStep(distributed, device),
        local_rank=distributed.local_rank,
    )
    trainer.fit(model, data.train, data.validation, resume=resume_from)
    shutdown_distributed(together=True)  # with rank 0, which leaves at the same barrier
    return None


def _plain_twin(spec: TaskSpec, data: Any, history: list[dict[str, float]]) -> tuple[Any, dict[str, float]]:
    """The plain "before" network of a defended spec (adversarial or private training), and its cost in seconds.

    Same spec, seed and prepared data with the defence off, so the report can show robustness
    before and after hardening, or the membership-inference audit and the accuracy of the private
    model beside a non-private one, and the metrics what the defence cost
    (`adversarial_cost_ratio`, `dp_sgd_cost_ratio`: the defended fit's seconds per epoch over the
    plain fit's). A private spec's twin is the private network itself (group norm for batch norm,
    the same initial weights) trained without DP-SGD, so the two differ by the clipping, the noise
    and the Poisson sampling only. Not checkpointed: a resumed run trains it again. None and no
    metrics when there is no defence, its `compare` is false, or (private training) no
    membership-inference audit would read it.

    Args:
        history: the defended fit's epochs, with their seconds (all of them after a resume; the
            ratio is per epoch, as early stopping may end the two fits at different epochs).
    """
    adv, dp = spec.train.adversarial, spec.train.privacy
    if adv is not None and adv.compare:
        defence = "adversarial"
    elif dp is not None and dp.compare and spec.evaluate.privacy_audit is not None and evaluate.audit_refusal(task_of(spec)) is None:
        defence = "dp_sgd"
    else:
        return None, {}
    plain = spec.model_copy(deep=True)
    plain.train.adversarial = plain.train.privacy = None
    with seeded(plain.train.seed):
        twin = build_model(spec if defence == "dp_sgd" else plain, data.schema)
    trainer = Trainer.from_spec(plain, data, task_of(plain))
    plain_history = trainer.fit(twin, data.train, data.validation)

    def per_epoch(h: list[dict[str, float]]) -> float:
        return sum(e["seconds"] for e in h) / max(len(h), 1)

    return twin.eval(), {
        "plain_twin_fit_seconds": trainer.fit_seconds,
        "plain_twin_epochs_trained": len(plain_history),
        f"{defence}_cost_ratio": per_epoch(history) / max(per_epoch(plain_history), 1e-9),
    }


def find_resumable_run(settings: Settings, name: str, digest: str) -> Path:
    """The newest run of `name` that was interrupted (neither completed nor failed) and has a checkpoint.

    Raises:
        RunError: there is none, or its spec differs from the one given.
    """
    # Only folders of exactly this name: a glob on `NAME-*` would also match runs of `NAME-big`.
    pattern = re.compile(re.escape(name) + r"-(\d{8}-\d{6})(?:-(\d+))?")
    found = []
    if settings.runs_dir.is_dir():
        for p in settings.runs_dir.iterdir():
            m = pattern.fullmatch(p.name)
            if m and p.is_dir():
                found.append(((m.group(1), int(m.group(2) or 1)), p))
    candidates = [p for _, p in sorted(found, reverse=True)]  # newest first; `-10` after `-9`
    for run_dir in candidates:
        status = _read_status(run_dir)
        if status.get("state") in ("completed", "failed") or not (run_dir / "checkpoints" / "last.safetensors").exists():
            continue
        if status.get("spec_digest") != digest:
            raise RunError(f"{run_dir}: the interrupted run used a different spec; resume it with the same spec or train anew")
        return run_dir
    raise RunError(f"no interrupted run of {name!r} with a checkpoint in the workspace's runs folder ({settings.runs_dir}/)")


# ---------------------------------------------------------------------------- helpers


def _new_run_dir(settings: Settings, name: str) -> Path:
    # A run folder holds a plaintext package and data summaries: 0700 (as are runs/ and a new
    # workspace folder), whatever the umask.
    private_dir(settings.runs_dir)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for i in range(1, 1000):
        path = settings.runs_dir / (f"{name}-{stamp}" if i == 1 else f"{name}-{stamp}-{i}")
        try:
            path.mkdir(mode=PRIVATE_DIR)
            os.chmod(path, PRIVATE_DIR)
            return path
        except FileExistsError:
            continue
    raise RunError(f"cannot create a run folder for {name!r} in the workspace's runs folder ({settings.runs_dir}/)")


def _write_status(run_dir: Path, state: str, digest: str, **extra: Any) -> None:
    status = _read_status(run_dir)
    status.update({"state": state, "spec_digest": digest, "updated": _now(), **extra})
    status.setdefault("started", status["updated"])
    atomic_write_text(run_dir / _STATUS, json.dumps(status, indent=1))
    # Stages write into the run folder with their own calls (a CSV appended per epoch, reports):
    # at each change of status every file in it is narrowed to 0600 and every folder to 0700.
    # The folder is 0700 from its creation, so no other user could reach them in between.
    make_private(run_dir)


def _read_status(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((run_dir / _STATUS).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
