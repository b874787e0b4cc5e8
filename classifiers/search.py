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
import os
import shutil

from classifiers.models import build_cnn
from classifiers.train import EARLY_STOP_PATIENCE, SEARCH_SPACE, TRAIN_AUGMENTATIONS, train_run, verbosity
from data.pipeline import make_dataset
from data.runs import experiment_dir, partial_dir, run_lock
from data.runtime import UserError

TUNER_FOLDER = ".hpsearch-tuner"


def hyperparameters_to_config(values):
    return {"filters": [int(f) for f in str(values["filters"]).split("-")], "head": values["head"],
            "dropout": float(values["dropout"]), "residual": bool(values["residual"]),
            "learning_rate": float(values["learning_rate"]), "augment": bool(values["augment"]),
            # trials of a search begun before the schedule was searched ran at a constant rate
            "schedule": values.get("schedule", "constant")}


def training_steps(cfg, train, epochs):
    """Optimizer steps in a run of `epochs` epochs (what a cosine schedule decays over)."""
    return max(1, -(-len(train[1]) // cfg["batch_size"])) * epochs


def build_from_config(image_size, hp, name="hpsearch", decay_steps=None):
    return build_cnn(image_size, hp["filters"], hp["head"], hp["dropout"], hp["residual"], hp["learning_rate"],
                     name=name, schedule=hp.get("schedule", "constant"), decay_steps=decay_steps)


def make_hypermodel(cfg, train, val):
    import keras_tuner as kt

    class DetectorHyperModel(kt.HyperModel):
        def build(self, hp):
            values = {name: hp.Choice(name, choices) if not isinstance(choices[0], bool) else hp.Boolean(name)
                      for name, choices in SEARCH_SPACE.items()}
            return build_from_config(cfg["image_size"], hyperparameters_to_config(values), name="trial",
                                     decay_steps=training_steps(cfg, train, cfg["search_epochs"]))

        def fit(self, hp, model, *args, **kwargs):
            augment = TRAIN_AUGMENTATIONS if hp.get("augment") else ()
            train_ds = make_dataset(train[0], train[1], cfg["batch_size"], training=True, seed=cfg["seed"],
                                    augment=augment)
            val_ds = make_dataset(val[0], val[1], cfg["batch_size"])
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


def make_tuner(cfg, hypermodel, strategy):
    import keras_tuner as kt

    common = dict(objective=kt.Objective("val_auc", direction="max"), seed=cfg["seed"],
                  directory=experiment_dir(cfg["runs_dir"], cfg["experiment"]), project_name=TUNER_FOLDER,
                  overwrite=False, distribution_strategy=strategy if cfg["strategy"] == "mirrored" else None)
    if cfg["tuner"] == "random":
        return announcing(kt.RandomSearch)(hypermodel, max_trials=cfg["max_trials"], **common)
    if cfg["tuner"] == "bayesian":
        return announcing(kt.BayesianOptimization)(hypermodel, max_trials=cfg["max_trials"], **common)
    if cfg["tuner"] == "hyperband":
        # Hyperband sets its own number of trials from the epoch budget; --max-trials does not apply.
        return announcing(kt.Hyperband)(hypermodel, max_epochs=cfg["search_epochs"], factor=3, **common)
    raise UserError(f"unknown tuner {cfg['tuner']!r}")


def trials_table(tuner):
    rows = []
    for trial in sorted(tuner.oracle.trials.values(), key=lambda t: t.trial_id):
        score = trial.score
        rows.append({"trial": trial.trial_id, "status": str(trial.status), "val_auc": score,
                     "best_step": trial.best_step, "hyperparameters": trial.hyperparameters.values})
    return rows


def keep_earlier_trial_logs(cfg, search_logs):
    """A search extended after it finished: carry the earlier trials' logs into the new run folder."""
    earlier = os.path.join(experiment_dir(cfg["runs_dir"], cfg["experiment"]), "hpsearch", "logs", "search")
    if not os.path.isdir(earlier):
        return
    for trial in os.listdir(earlier):
        if not os.path.exists(os.path.join(search_logs, trial)):
            shutil.copytree(os.path.join(earlier, trial), os.path.join(search_logs, trial))


def search_and_retrain(cfg, manifest, train, val, strategy, chief):
    distributed = "KERASTUNER_ORACLE_IP" in os.environ
    if distributed:  # the chief and its workers share the tuner folder by design
        return _search_and_retrain(cfg, manifest, train, val, strategy, chief)
    with run_lock(cfg["runs_dir"], cfg["experiment"], "hpsearch-search"):
        return _search_and_retrain(cfg, manifest, train, val, strategy, chief)


def _search_and_retrain(cfg, manifest, train, val, strategy, chief):
    import keras

    tuner_id = os.environ.get("KERASTUNER_TUNER_ID")
    distributed = "KERASTUNER_ORACLE_IP" in os.environ
    hypermodel = make_hypermodel(cfg, train, val)
    tuner = make_tuner(cfg, hypermodel, strategy)
    is_worker = distributed and not (tuner_id or "").startswith("chief")
    done = 0 if is_worker else sum(1 for t in tuner.oracle.trials.values() if str(t.status) == "COMPLETED")
    if done:
        print(f"search: resuming, {done} finished trial(s) reloaded from "
              f"{os.path.join(experiment_dir(cfg['runs_dir'], cfg['experiment']), TUNER_FOLDER)}")
    search_logs = os.path.join(partial_dir(cfg["runs_dir"], cfg["experiment"], "hpsearch"), "logs", "search")
    callbacks = [keras.callbacks.EarlyStopping(monitor="val_auc", mode="max", patience=EARLY_STOP_PATIENCE)]
    # keras-tuner gives every trial its own sub-folder (named by trial id) and adds its HParams
    callbacks.append(keras.callbacks.TensorBoard(search_logs))
    tuner.search(epochs=cfg["search_epochs"], callbacks=callbacks, verbose=verbosity())
    if is_worker:
        print(f"search worker {tuner_id}: no trials left; the chief retrains the best and writes the run")
        return None, None
    keep_earlier_trial_logs(cfg, search_logs)
    table = trials_table(tuner)
    best = tuner.get_best_hyperparameters(1)
    if not best:
        raise UserError("the search finished no trial; nothing to retrain")
    hp = hyperparameters_to_config(best[0].values)
    print(f"search: best of {len(table)} trial(s): {hp}; retraining it on the training split")
    keras.backend.clear_session()
    augment = TRAIN_AUGMENTATIONS if hp["augment"] else ()
    stop = keras.callbacks.EarlyStopping(monitor="val_auc", mode="max", patience=EARLY_STOP_PATIENCE,
                                         restore_best_weights=True)
    steps = training_steps(cfg, train, cfg["epochs"])
    return train_run("hpsearch", lambda: build_from_config(cfg["image_size"], hp, decay_steps=steps), cfg, manifest,
                     train, val, hp, augment=augment, strategy=strategy, chief=chief, extra_callbacks=[stop],
                     extra={"search": {"tuner": cfg["tuner"], "objective": "val_auc (max)",
                                       "space": SEARCH_SPACE, "trials": table}})
