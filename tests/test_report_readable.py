"""What the report shows a newcomer reads as it is: one format per hyperparameter in HParams, figures that
read at their own size whatever the number of models, one spread only where there are seeds."""
import numpy as np
from PIL import Image

from compare import evaluation, plots
from compare.adaptation import cell


def test_hparams_take_one_format_per_hyperparameter_across_models_and_trials():
    from classifiers.registry import AUGMENT_SWITCH, BASELINE, RESNET
    from classifiers.search import SEARCH_SPACE, config_to_hyperparameters

    baseline = evaluation.flat_hparams("baseline", {"image_size": 64, "precision": "float32", "hyperparameters": BASELINE})
    resnet = evaluation.flat_hparams("resnet", {"image_size": 64, "precision": "float32", "hyperparameters": RESNET})
    searched = evaluation.flat_hparams("hpsearch", {"image_size": 64, "precision": "float32",
                                                    "hyperparameters": dict(BASELINE, augment=True, gan_run=None)})
    trial = config_to_hyperparameters(BASELINE)  # what keras-tuner logs for a trial
    assert baseline["filters"] == trial["filters"] == "32-64" and isinstance(SEARCH_SPACE["filters"][0], str)
    assert baseline["augment"] is False and resnet["augment"] is True and searched["augment"] is True
    assert type(trial["augment"]) is bool
    assert (baseline["augmentations"], resnet["augmentations"]) == ("none", "flip")
    assert searched["augmentations"] == "-".join(AUGMENT_SWITCH) and "gan_run" not in searched
    assert resnet["widths"] == "32-64-128-256"
    for hp in (baseline, resnet, searched):
        assert all(isinstance(v, (bool, int, float, str)) for v in hp.values())


def fake_results(n, rng):
    out, images = {}, {}
    for i in range(n):
        y = rng.integers(0, 2, 60)
        p = np.clip(0.4 * y + 0.6 * rng.random(60), 0, 1)
        name = f"dcgan-discriminator-labels{i}.seed1337"
        out[name] = (y, p, {"roc_auc": 0.8, "ece": 0.1, "threshold": 0.5,
                            "confusion_at_threshold": {"tn": 20, "fp": 10, "fn": 8, "tp": 22}})
        images[name] = rng.integers(0, 255, (60, 16, 16, 3)).astype(np.uint8)
    return out, images


def test_figures_of_eighteen_models_read_at_their_own_size(tmp_path):
    results, images = fake_results(18, np.random.default_rng(0))
    confusion = Image.open(plots.confusion_plot(results, str(tmp_path / "c.png")))
    assert confusion.width <= 2000 and confusion.height < confusion.width  # a grid, not 18 panels in a row
    assert plots.COLUMNS * 2.6 * 110 >= confusion.width
    styles = plots.styles(18)
    assert len(set(styles)) == 18  # no two curves of the ROC share a colour and a line
    Image.open(plots.roc_plot(results, str(tmp_path / "r.png")))
    mistakes = Image.open(plots.mistakes_plot(dict(list(results.items())[:3]), images, str(tmp_path / "m.png")))
    assert mistakes.height > 3 * 1.9 * 110  # a row per model below the title, the title above them


def test_one_seed_shows_no_spread():
    row = {"shots": 25, "seeds": 1, "family_auc": 0.946, "family_sd": 0.0, "source_change": -0.002}
    assert cell(row) == "0.946 (-0.002)"
    assert cell(dict(row, seeds=3, family_sd=0.01)) == "0.946 +- 0.010 (-0.002)"


def test_the_config_line_names_each_setting_that_applies_once():
    from classifiers import train

    baseline = train.config(["--model", "baseline"]).summary("detector")
    search = train.config(["--model", "hpsearch"]).summary("search")
    assert "max_trials" not in baseline and "tuner" not in baseline and "options" not in baseline
    assert "max_trials=30" in search and "tuner=hyperband" in search
    keys = [item.split("=")[0] for item in baseline.removeprefix("config: ").split()]
    assert len(keys) == len(set(keys)) and "retrain" not in keys and "epochs" in keys
    assert "backbone=" in train.config(["--model", "backbone"]).summary("detector")
