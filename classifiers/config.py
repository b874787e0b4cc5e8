"""The configuration of a `classifiers.train` command: presets, then a typed, frozen record of every setting.

`DetectorConfig` is what the command prints at its start and what run.json records under "config" (all of
it but runs_dir, which says where, not what), so a finished run can be compared with the one about to
replace it. Change a setting with dataclasses.replace(cfg, epochs=3), never in place.
"""
import dataclasses
import os
from typing import Mapping, Optional

from classifiers.registry import DETECTORS
from data.pipeline import RESIZE
from data.runtime import CommandConfig, setting

PRESETS = {
    # quick: minutes on 2 CPU cores, and still learns. The search is Hyperband promoting the best trials to
    # 12 epochs (deep nets need that long to show their worth), stopped after 15 minutes or 30 trials.
    "quick": {"image_size": 64, "epochs": 8, "max_trials": 30, "search_epochs": 12, "search_minutes": 15,
              "batch_size": 32},
    # paper: the original study's settings
    "paper": {"image_size": 256, "epochs": 10, "max_trials": 30, "search_epochs": 10, "search_minutes": None,
              "batch_size": 32},
}
TUNERS = ("random", "hyperband", "bayesian")
STRATEGIES = ("none", "mirrored", "multiworker")


@dataclasses.dataclass(frozen=True, kw_only=True)
class DetectorConfig(CommandConfig):
    model: str = "baseline"  # a name in classifiers.registry.DETECTORS, or hpsearch
    preset: str = "quick"  # PRESETS: the fields below without a default are the preset's (from_preset)
    image_size: int
    resize_mode: str = RESIZE  # squash each face to the input size, or cut its centre at full detail
    epochs: int
    batch_size: int
    # the search (hpsearch): its budget (a larger one extends a finished search) and its tuner
    max_trials: int = setting(roles=("search",), extends=True)
    search_epochs: int = setting(roles=("search",))
    search_minutes: Optional[float] = setting(roles=("search",), extends=True)
    tuner: str = setting("hyperband", roles=("search",))
    # labelled training images used (data.runtime.label_count: a count or a fraction); None: all of them
    labels: Optional[str] = None
    # training perturbations instead of the detector's own (comma-separated, or "none"); None: its own
    augment: Optional[str] = None
    # the detector's own settings (classifiers.registry.Option: --backbone, --weights ...), by name
    options: Mapping = dataclasses.field(default_factory=dict)
    strategy: str = "none"  # tf.distribute

    def record(self):
        """The settings run.json keeps, the detector's own options among them (as --backbone is recorded)."""
        record = super().record()
        return dict(record, **record.pop("options"))

    def identity(self, role=None):
        """Every setting's (CommandConfig.identity), and the detector's own options."""
        own = DETECTORS[self.model].options if self.model in DETECTORS else ()
        out = super().identity(role)
        out.pop("options", None)
        return dict(out, **{o.name: (self.options.get(o.name, o.default), o.default) for o in own})

    @classmethod
    def from_preset(cls, preset=None, **settings):
        """The preset's values (the default preset's where None), overridden by settings (None leaves the
        preset's value)."""
        values = dict(PRESETS[preset or cls.preset], preset=preset or cls.preset)
        values.update({k: v for k, v in settings.items() if v is not None})
        values["runs_dir"] = os.path.abspath(values.get("runs_dir", cls.runs_dir))
        return cls(**values)
