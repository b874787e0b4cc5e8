"""Which layout a data folder has: the class folders in it, the side of a split each belongs to where the data
set brings its own, and the generator each comes from where it is sorted by generator.

Read by folder names alone, matched whole and in any letter case; a label never comes from alphabetical order:
- `Real/` + `Fake/` (the kit's own, and the StyleGAN-StyleGAN2 Deepfake Face Images set);
- a given split: `{train,valid,test}/{real,fake}` (the 140k Real and Fake Faces set, below its wrapper
  folders `real_vs_fake/real-vs-fake/`), or `{train,val}/{ai,nature}` (GenImage);
- one folder per generator holding `0_real/` + `1_fake/` (CNNDetection, UniversalFakeDetect), sometimes one
  level deeper per object class; GenImage's `<generator>/.../{train,val}/{ai,nature}` combines the two.
"""
import os
from dataclasses import dataclass, field

from data.runtime import UserError

REAL, FAKE = 0, 1  # Fake is the positive class in every metric
LABEL_NAMES = {REAL: "real", FAKE: "fake"}
CLASS_NAMES = {"real": REAL, "fake": FAKE, "0_real": REAL, "1_fake": FAKE, "nature": REAL, "ai": FAKE}
SIDE_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
              "test": "test", "testing": "test"}
MAX_DEPTH = 6  # folders between the root and a class folder (GenImage: generator/subset/side/class is 4)
# Which public set a layout looks like, by its class folder names (for the message only)
FAMILIAR = {("0_real", "1_fake"): "CNNDetection / UniversalFakeDetect", ("ai", "nature"): "GenImage"}


@dataclass(frozen=True)
class ClassFolder:
    path: str  # absolute
    label: int
    side: str = None  # train / val / test where the data set gives its own split
    generator: str = None  # the folder below the root that it sits in, where there are several (deeper
    # folders, such as CNNDetection's object classes, belong to their generator)


@dataclass
class Layout:
    root: str
    folders: list = field(default_factory=list)  # ClassFolder
    ignored: list = field(default_factory=list)  # sub-folders below the root with no class folder in them
    top: str = None  # the root below its wrapper folders (real_vs_fake/real-vs-fake/): generators are in it

    @property
    def given_sides(self):
        return sorted({f.side for f in self.folders if f.side}, key=["train", "val", "test"].index)

    @property
    def generators(self):
        return sorted({f.generator for f in self.folders if f.generator})

    def generator_folders(self):
        """{generator: its folder}, where the data set is sorted by generator (else {})."""
        return {g: os.path.join(self.top, g) for g in self.generators}

    def describe(self):
        """One line: which layout was found, in the words a user would recognise."""
        shown = {}  # as the folders are spelt, one name per class name in any case
        for f in self.folders:
            shown.setdefault(os.path.basename(f.path).lower(), os.path.basename(f.path))
        names = [shown[n] for n in sorted(shown, key=lambda n: (CLASS_NAMES[n], n))]
        kind = FAMILIAR.get(tuple(sorted(n for n in shown if n in ("0_real", "1_fake", "ai", "nature"))))
        parts = [" + ".join(f"{n}/" for n in names) + " class folders" + (f" ({kind} style)" if kind else "")]
        if self.given_sides:
            parts.append("a given split: " + ", ".join(self.given_sides))
        if self.generators:
            shown = ", ".join(self.generators[:8]) + (f" and {len(self.generators) - 8} more" if len(self.generators) > 8 else "")
            parts.append(f"{len(self.generators)} generators: {shown}")
        if self.ignored:
            parts.append("ignored (no class folder inside): " + ", ".join(self.ignored[:5]))
        return "layout: " + "; ".join(parts)


def _subfolders(folder):
    try:
        names = sorted(os.listdir(folder))
    except OSError as e:
        raise UserError(f"cannot list {folder}: {e.strerror or e}")
    return [n for n in names if not n.startswith(".") and os.path.isdir(os.path.join(folder, n))
            and not os.path.islink(os.path.join(folder, n))]


def _class_children(folder, names):
    """{label: name} of the class folders among names; UserError for two folders of one class."""
    found = {}
    for name in names:
        label = CLASS_NAMES.get(name.lower())
        if label is None:
            continue
        if label in found:
            raise UserError(f"{folder}: two folders for the {LABEL_NAMES[label]} class ({found[label]}/ and {name}/); "
                            "rename or move one")
        found[label] = name
    return found


def _walk(folder, rel, side, out, depth):
    """Collect the class folders below folder (rel: its path from the root, as parts)."""
    names = _subfolders(folder)
    classes = _class_children(folder, names)
    sides = {n: SIDE_NAMES[n.lower()] for n in names if n.lower() in SIDE_NAMES}
    if classes and sides:
        raise UserError(f"{folder}: both class folders ({', '.join(sorted(classes.values()))}) and split folders "
                        f"({', '.join(sorted(sides))}); expected one or the other")
    if classes:
        out.extend(ClassFolder(os.path.join(folder, name), label, side, rel[0] if rel else None)
                   for label, name in sorted(classes.items()))
        return True
    if sides and side:
        raise UserError(f"{folder}: split folders ({', '.join(sorted(sides))}) inside the {side} split")
    if len(set(sides.values())) < len(sides):
        raise UserError(f"{folder}: two folders for one side of the split ({', '.join(sorted(sides))})")
    if depth >= MAX_DEPTH:
        return False
    found = False
    for name in names:
        if name in sides:
            found |= _walk(os.path.join(folder, name), rel, sides[name], out, depth + 1)
        else:
            found |= _walk(os.path.join(folder, name), rel + [name], side, out, depth + 1)
    return found


def find_layout(root, one_class_ok=False):
    """The Layout of a data folder, or a UserError naming what was seen there."""
    if not os.path.isdir(root):
        raise UserError(f"data folder {root} does not exist or is not a folder")
    root = os.path.abspath(root)
    layout = Layout(root)
    top, seen = root, _subfolders(root)
    while True:  # wrapper folders with one sub-folder and no class or split folder (real_vs_fake/real-vs-fake/)
        names = _subfolders(top)
        if len(names) != 1 or names[0].lower() in CLASS_NAMES or names[0].lower() in SIDE_NAMES:
            break
        top = os.path.join(top, names[0])
    layout.top = top
    if _class_children(top, names) or any(n.lower() in SIDE_NAMES for n in names):
        _walk(top, [], None, layout.folders, 0)
    else:
        for name in names:  # one folder per generator (or per object class): each holds its own class folders
            if not _walk(os.path.join(top, name), [name], None, layout.folders, 1):
                layout.ignored.append(name)
    if not layout.folders:
        seen = ", ".join(f"{n}/" for n in seen[:8]) or "no sub-folder"
        raise UserError(f"{root}: no class folders found (saw {seen}); expected Real/ and Fake/ (or real/ + fake/, "
                        "0_real/ + 1_fake/, nature/ + ai/), possibly inside train/ val/ test/ or one folder per generator")
    _check(layout, one_class_ok)
    return layout


def _check(layout, one_class_ok):
    """Every given side and every generator needs both classes (one_class_ok: a fake-only test set is fine)."""
    sided = {f.side is not None for f in layout.folders}
    if len(sided) > 1:
        loose = next(f.path for f in layout.folders if f.side is None)
        raise UserError(f"{layout.root}: some class folders are inside train/ val/ test/ folders and some are not "
                        f"(e.g. {loose})")
    labels = {}
    for f in layout.folders:
        labels.setdefault((f.side, f.generator), set()).add(f.label)
    if one_class_ok:
        return
    for (side, generator), have in sorted(labels.items(), key=str):
        if len(have) < 2:
            where = " of ".join(x for x in (side and f"the {side} side", generator and f"generator {generator}") if x)
            missing = ({REAL, FAKE} - have).pop()
            raise UserError(f"{layout.root}: {where or 'the folder'} has no {LABEL_NAMES[missing]} class folder "
                            f"(one of {', '.join(n + '/' for n, l in CLASS_NAMES.items() if l == missing)})")
