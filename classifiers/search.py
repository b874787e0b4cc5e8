"""The keras-tuner search over CNN detectors, then the best configuration retrained and saved as a run.

Design choices against keras-tuner's known pitfalls:
- memory growing from trial to trial: every trial builds its model after keras.backend.clear_session()
  (keras-tuner does this) and its datasets are made per trial from the same in-memory arrays;
- a custom objective's direction: stated explicitly, kt.Objective("val_auc", "max");
- the "best model" from a trial checkpoint: not used; the best configuration is retrained from scratch
  on the training split with the run's own seed, so the saved model is exactly what its config makes.
The tuner's state lives in runs/<experiment>/.hpsearch-tuner/: the same command resumes the search and
a larger --max-trials extends it.
"""
import contextlib
import dataclasses
import os
import shutil
import time

import keras

from classifiers.config import PRESETS
from classifiers.registry import BASELINE, DETECTORS, DetectorRun, augmentations, detector_run
from classifiers.runner import publish, record_header, train, train_run, training_steps, verbosity
from data.pipeline import make_dataset
from data.runs import BrokenRun, experiment_dir, finish_run, partial_dir, read_run, run_lock, write_json_atomic
from data.runtime import UserError

TUNER_FOLDER = ".hpsearch-tuner"
SEARCHED = "baseline"  # the registered detector whose hyperparameters the search explores
SEARCH_SPACE = {
    # the study's block lists, and a fourth block with global pooling's room to see the whole face: on the
    # development faces a 32-64-128-256 / GAP / cosine net reached test AUC 0.848 in 24 epochs at 64 px,
    # against 0.804 for the baseline (see docs/results.md)
    "filters": ["32", "32-64", "32-64-128", "64-128", "64-128-256", "32-64-128-256"],
    "head": ["flatten", "gap"],
    "learning_rate": [1e-3, 5e-4, 1e-4],
    "residual": [False, True],  # the study's named next step
    "dropout": [0.0, 0.2, 0.4],
    "augment": [False, True],
    "schedule": ["constant", "cosine"],  # cosine decays to 0 over the trial's (or the retrain's) epochs
}
EARLY_STOP_PATIENCE = 2  # epochs without a better validation AUC before a trial stops


def hyperparameters_to_config(values):
    return {"filters": [int(f) for f in str(values["filters"]).split("-")], "head": values["head"],
            "dropout": float(values["dropout"]), "residual": bool(values["residual"]),
            "learning_rate": float(values["learning_rate"]), "augment": bool(values["augment"]),
            # trials of a search begun before the schedule was searched ran at a constant rate
            "schedule": values.get("schedule", "constant")}


def config_to_hyperparameters(hp):
    """The inverse of hyperparameters_to_config: a configuration as the tuner's values."""
    return {"filters": "-".join(str(f) for f in hp["filters"]), "head": hp["head"], "learning_rate": hp["learning_rate"],
            "residual": hp["residual"], "dropout": hp["dropout"], "augment": hp["augment"], "schedule": hp["schedule"]}


def build_from_config(cfg, hp, epochs, train_images, name="trial"):
    """A trial's model: the searched detector with these hyperparameters, compiled for `epochs` epochs."""
    detector = DETECTORS[SEARCHED]
    model = detector.build(dataclasses.replace(cfg, model=name), hp)
    return detector.recipe(model, hp, training_steps(train_images, cfg.batch_size, 1), epochs)


def make_hypermodel(cfg, train, val):
    import keras_tuner as kt

    class DetectorHyperModel(kt.HyperModel):
        def build(self, hp):
            # keras-tuner calls keras.backend.clear_session() before every build, which in Keras 3 resets the
            # global dtype policy to float32: set the run's precision again, or every trial runs float32
            keras.mixed_precision.set_global_policy(cfg.precision)
            values = {name: hp.Choice(name, choices) if not isinstance(choices[0], bool) else hp.Boolean(name)
                      for name, choices in SEARCH_SPACE.items()}
            return build_from_config(cfg, hyperparameters_to_config(values), cfg.search_epochs, len(train[1]))

        def fit(self, hp, model, *args, **kwargs):
            train_ds = make_dataset(*train, cfg.batch_size, training=True, seed=cfg.seed,
                                    augment=augmentations(bool(hp.get("augment"))))
            val_ds = make_dataset(*val, cfg.batch_size)
            return model.fit(train_ds, validation_data=val_ds, shuffle=False, **kwargs)

    return DetectorHyperModel()


def announcing(tuner_class):
    """The tuner class, saying which trial this process runs (a worker's only record of its share)."""

    class Announcing(tuner_class):
        def run_trial(self, trial, *args, **kwargs):
            print(f"trial {trial.trial_id} on {self.tuner_id}: {trial.hyperparameters.values}", flush=True)
            return super().run_trial(trial, *args, **kwargs)

    Announcing.__name__ = tuner_class.__name__
    return Announcing


def steer(oracle, first_values, max_trials, deadline):
    """Make any keras-tuner oracle try `first_values` (the baseline) first, and stop at a trial count or a time.

    Done by swapping in a subclass of the oracle's own class, so random, Bayesian and Hyperband keep their
    logic (Hyperband's rounds included) and their saved state."""
    base = type(oracle)

    class Steered(base):
        def populate_space(self, trial_id):
            if self.deadline and time.time() > self.deadline and self.trials:  # at least the baseline runs
                return {"status": "STOPPED", "values": None}
            return super().populate_space(trial_id)

        def _random_values(self):
            # compared on the searched names only: Hyperband adds its own "tuner/..." values to each trial
            tried = [{k: t.hyperparameters.values.get(k) for k in self.first_values} for t in self.trials.values()]
            if self.first_values not in tried:
                return dict(self.first_values)
            return super()._random_values()

    Steered.__name__ = base.__name__
    oracle.__class__ = Steered
    oracle.first_values, oracle.deadline = first_values, deadline
    if max_trials:
        oracle.max_trials = max_trials  # Hyperband sizes its own brackets; this caps them all the same
    return oracle


def make_tuner(cfg, hypermodel, strategy):
    import keras_tuner as kt

    common = dict(objective=kt.Objective("val_auc", direction="max"), seed=cfg.seed,
                  directory=experiment_dir(cfg.runs_dir, cfg.experiment), project_name=TUNER_FOLDER,
                  overwrite=False, distribution_strategy=strategy if cfg.strategy == "mirrored" else None)
    if cfg.tuner == "random":
        tuner = announcing(kt.RandomSearch)(hypermodel, max_trials=cfg.max_trials, **common)
    elif cfg.tuner == "bayesian":
        tuner = announcing(kt.BayesianOptimization)(hypermodel, max_trials=cfg.max_trials, **common)
    elif cfg.tuner == "hyperband":
        # Hyperband trains most trials for a few epochs and promotes the best to search_epochs (factor 3)
        tuner = announcing(kt.Hyperband)(hypermodel, max_epochs=cfg.search_epochs, factor=3, **common)
    else:
        raise UserError(f"unknown tuner {cfg.tuner!r}")
    if not isinstance(tuner.oracle, kt.Oracle):
        return tuner  # a worker's client of the chief's oracle: the chief steers the search
    minutes = cfg.search_minutes
    steer(tuner.oracle, config_to_hyperparameters(BASELINE), cfg.max_trials,
          time.time() + 60 * minutes if minutes else None)
    return tuner


def trials_table(tuner):
    rows = []
    for trial in sorted(tuner.oracle.trials.values(), key=lambda t: t.trial_id):
        score = trial.score
        rows.append({"trial": trial.trial_id, "status": str(trial.status), "val_auc": score,
                     "best_step": trial.best_step, "hyperparameters": trial.hyperparameters.values})
    return rows


def keep_earlier_trial_logs(cfg, search_logs):
    """A search extended after it finished: carry the earlier trials' logs into the new run folder."""
    earlier = os.path.join(experiment_dir(cfg.runs_dir, cfg.experiment), "hpsearch", "logs", "search")
    if not os.path.isdir(earlier):
        return
    for trial in os.listdir(earlier):
        if not os.path.exists(os.path.join(search_logs, trial)):
            shutil.copytree(os.path.join(earlier, trial), os.path.join(search_logs, trial))


class SearchWinner(DetectorRun):
    """The search's best configuration retrained: the whole budget, then the best epoch's weights (a trial is
    scored at its best epoch too, and an early stop cut a cosine-scheduled 4-block winner at 0.80 validation
    AUC where its trial had reached 0.88)."""

    def callbacks(self):
        return [keras.callbacks.EarlyStopping(monitor="val_auc", mode="max", patience=self.epochs,
                                              restore_best_weights=True)]


def search_and_retrain(cfg, data, strategy, chief):
    distributed = "KERASTUNER_ORACLE_IP" in os.environ
    if distributed:  # the chief and its workers share the tuner folder by design
        return _search_and_retrain(cfg, data, strategy, chief)
    with run_lock(cfg.runs_dir, cfg.experiment, "hpsearch-search"):
        return _search_and_retrain(cfg, data, strategy, chief)


def _search_and_retrain(cfg, data, strategy, chief):
    tuner_id = os.environ.get("KERASTUNER_TUNER_ID")
    distributed = "KERASTUNER_ORACLE_IP" in os.environ
    hypermodel = make_hypermodel(cfg, data.train, data.val)
    tuner = make_tuner(cfg, hypermodel, strategy)
    is_worker = distributed and not (tuner_id or "").startswith("chief")
    done = 0 if is_worker else sum(1 for t in tuner.oracle.trials.values() if str(t.status) == "COMPLETED")
    if done:
        print(f"search: resuming, {done} finished trial(s) reloaded from "
              f"{os.path.join(experiment_dir(cfg.runs_dir, cfg.experiment), TUNER_FOLDER)}")
    search_logs = os.path.join(partial_dir(cfg.runs_dir, cfg.experiment, "hpsearch"), "logs", "search")
    callbacks = [keras.callbacks.EarlyStopping(monitor="val_auc", mode="max", patience=EARLY_STOP_PATIENCE)]
    # keras-tuner gives every trial its own sub-folder (named by trial id) and adds its HParams
    callbacks.append(keras.callbacks.TensorBoard(search_logs))
    tuner.search(epochs=cfg.search_epochs, callbacks=callbacks, verbose=verbosity())
    if is_worker:
        print(f"search worker {tuner_id}: no trials left; the chief retrains the best and writes the run")
        return None, None
    keep_earlier_trial_logs(cfg, search_logs)
    table = trials_table(tuner)
    best = tuner.get_best_hyperparameters(1)
    if not best:
        raise UserError("the search finished no trial; nothing to retrain")
    hp = hyperparameters_to_config(best[0].values)
    search = {"tuner": cfg.tuner, "objective": "val_auc (max)", "space": SEARCH_SPACE, "trials": table,
              "search_minutes": cfg.search_minutes}
    reference_folder, reference = baseline_reference(cfg, data, strategy, chief)
    if hp == BASELINE:
        print(f"search: best of {len(table)} trial(s) is the baseline's configuration; keeping the baseline")
        return keep_baseline(cfg, data, reference_folder, reference, search, "the baseline's configuration won "
                             "the search")
    print(f"search: best of {len(table)} trial(s): {hp}; retraining it on the training split")
    keras.backend.clear_session()
    keras.mixed_precision.set_global_policy(cfg.precision)  # clear_session() resets it to float32
    run = detector_run(cfg, data.train[1], detector=SEARCHED, hp=hp, run_class=SearchWinner)  # named hpsearch
    run.extra["search"] = search
    # a winner that does not beat the baseline is never put in place, not even for a moment: a kill before the
    # baseline replaced it would leave a search that returned less than its baseline
    with run_lock(cfg.runs_dir, cfg.experiment, run.name) if chief else contextlib.nullcontext():
        trained = train(run, cfg, data, strategy, chief)
        if trained is None:  # a worker: the chief writes the run
            return None, None
        if trained.info["validation"]["auc"] > reference["validation"]["auc"]:
            return publish(trained)
    info = trained.info
    note = (f"the retrained winner reached validation AUC {info['validation']['auc']:.4f}, not above the baseline's "
            f"{reference['validation']['auc']:.4f}: the baseline is kept")
    print(f"search: {note}")
    return keep_baseline(cfg, data, reference_folder, reference, dict(search, rejected_winner={
        "hyperparameters": hp, "validation": info["validation"], "resumed_from_epoch": info["resumed_from_epoch"]}),
        note)


def baseline_reference(cfg, data, strategy, chief):
    """(folder, run.json) of the baseline the search must beat, on this split at this input size.

    The experiment's own `baseline` run when there is one (however long it trained: it is the baseline);
    else the baseline is trained now at the preset's budget, as `baseline`, or as `search-baseline` where a
    `baseline` made at another input size must not be replaced."""
    folder = os.path.join(experiment_dir(cfg.runs_dir, cfg.experiment), "baseline")
    with run_lock(cfg.runs_dir, cfg.experiment, "baseline", wait=True):  # another command may be on it
        pass
    try:
        info = read_run(folder)
    except BrokenRun:
        info = None
    if info and info.get("split_fingerprint") == data.manifest["fingerprint"] and all(
            (info.get("config") or {}).get(k) == getattr(cfg, k) for k in ("image_size", "resize_mode")):
        print(f"search: the baseline to beat is {folder} (validation AUC {info['validation']['auc']:.4f})")
        return folder, info
    name = "baseline" if info is None else "search-baseline"
    print(f"search: training the baseline as '{name}', to judge the winner against")
    keras.backend.clear_session()
    keras.mixed_precision.set_global_policy(cfg.precision)  # clear_session() resets it to float32
    budget = dataclasses.replace(cfg, model="baseline", epochs=PRESETS[cfg.preset]["epochs"])
    return train_run(detector_run(budget, data.train[1], name=name), budget, data, strategy, chief)


def keep_baseline(cfg, data, reference_folder, reference, search, note):
    """hpsearch/ as a copy of the baseline's finished run (its very model, so never below it), with the
    search's record and the trials' logs, put in place like any run."""
    work = partial_dir(cfg.runs_dir, cfg.experiment, "hpsearch")
    final = os.path.join(experiment_dir(cfg.runs_dir, cfg.experiment), "hpsearch")
    with run_lock(cfg.runs_dir, cfg.experiment, "hpsearch"):
        os.makedirs(work, exist_ok=True)
        # the trials' logs stay (the lost winner's work folder holds them, an extended search's run too);
        # the lost winner's own training curves, checkpoint and progress go: this run is the baseline's model
        logs = os.path.join(work, "logs")
        for name in os.listdir(logs) if os.path.isdir(logs) else ():
            if name != "search":
                shutil.rmtree(os.path.join(logs, name), ignore_errors=True)
        os.makedirs(os.path.join(logs, "search"), exist_ok=True)
        keep_earlier_trial_logs(cfg, os.path.join(logs, "search"))
        shutil.rmtree(os.path.join(work, "backup"), ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(work, "progress.json"))
        shutil.copyfile(os.path.join(reference_folder, "model.keras"), os.path.join(work, "model.keras"))
        write_json_atomic(os.path.join(work, "split.json"), data.manifest)
        info = record_header("hpsearch", "detector", cfg, data, 0.0)
        info.update({k: v for k, v in reference.items() if k not in ("model", "created", "config")})
        info["search"] = dict(search, kept="baseline", kept_from=os.path.basename(reference_folder), note=note)
        finish_run(work, final, info)
    print(f"hpsearch: {note}; validation AUC {info['validation']['auc']:.4f}, run folder {final}")
    return final, info
