"""The code's shape: no import cycle, data flows one way between the packages, functions short enough to read."""
import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("data", "classifiers", "gan", "compare")
# what each package may import from the kit: data <- classifiers <- gan, and compare reads them all
ALLOWED = {"data": {"data"}, "classifiers": {"data", "classifiers"}, "gan": {"data", "classifiers", "gan"},
           "compare": set(PACKAGES)}
MAX_FUNCTION_LINES = 60
# Imports live at the top of a file, so a reader sees what it depends on. The exceptions: data.runtime loads
# TensorFlow lazily (and quietly) for the whole kit, so `python -m data` never pays for it; keras_tuner,
# matplotlib and tensorboard are loaded where they are used (only the search, the plots and the report need them);
# data.align loads mtcnn (which imports TensorFlow) only where faces are looked for.
LAZY_IMPORT_HOME = {"data.runtime": ("tensorflow", "keras", "absl"), "data.align": ("mtcnn", "keras")}
LAZY_ANYWHERE = ("keras_tuner", "matplotlib", "tensorboard")
MAX_IMPORTS_IN_FUNCTIONS = 21  # data.align adds keras: mtcnn builds its networks under float32, RNG kept


def kit_modules(root=ROOT):
    """{module name: parsed source} of every module of the kit."""
    return {module: ast.parse(text) for module, text in kit_sources(root).items()}


def kit_sources(root=ROOT):
    """{module name: source} of every module of the kit, sub-packages (compare.bench) included."""
    out = {}
    for package in PACKAGES:
        for folder, subfolders, files in sorted(os.walk(os.path.join(root, package))):
            subfolders[:] = sorted(d for d in subfolders if d != "__pycache__")
            dotted = os.path.relpath(folder, root).replace(os.sep, ".")
            for name in sorted(files):
                if name.endswith(".py"):
                    with open(os.path.join(folder, name)) as f:
                        out[dotted if name == "__init__.py" else f"{dotted}.{name[:-3]}"] = f.read()
    return out


def imports_of(tree, modules):
    """The kit modules a module imports anywhere (top level or inside a function: both run sooner or later)."""
    found = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        found |= {n for n in names if n in modules}
    return found


def find_cycle(graph):
    """One import cycle as a list of modules, or None."""
    state = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt, path + [nxt])
                if cycle:
                    return cycle
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start, [start])
            if cycle:
                return cycle
    return None


def test_find_cycle_finds_one_and_only_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_module_of_the_kit_imports_itself_back():
    modules = kit_modules()
    # a package's __init__ is run by every import of its modules: importing a module imports its package too
    graph = {m: imports_of(tree, modules) - {m} for m, tree in modules.items()}
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_data_flows_one_way_between_the_packages():
    modules = kit_modules()
    wrong = [f"{m} imports {i}" for m, tree in modules.items() for i in imports_of(tree, modules)
             if i.split(".")[0] not in ALLOWED[m.split(".")[0]]]
    assert not wrong, wrong


def test_the_report_never_imports_the_benchmarks():
    """compare.bench trains and times things; the report only reads run folders (and what bench wrote)."""
    modules = kit_modules()
    assert "compare.bench.cli" in modules  # the walk reaches the sub-package
    wrong = [f"{m} imports {i}" for m, tree in modules.items() if not m.startswith("compare.bench")
             for i in imports_of(tree, modules) if i == "compare.bench" or i.startswith("compare.bench.")]
    assert not wrong, wrong


def test_functions_are_short_or_say_why():
    long = []
    for module, text in kit_sources().items():
        lines = [""] + text.splitlines()  # lines[n] is line n
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                said = "long because" in lines[node.lineno] + lines[node.lineno - 1]
                if length > MAX_FUNCTION_LINES and not said:
                    long.append(f"{module}.{node.name}: {length} lines")
    assert not long, long


def imports_in_functions(tree):
    """[(line, imported module)] of every import statement inside a function body."""
    found = []
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                if isinstance(node, ast.Import):
                    found += [(node.lineno, a.name) for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    found.append((node.lineno, "." * node.level + (node.module or "")))
    return sorted(set(found))


def test_imports_are_at_the_top_but_for_the_lazy_few():
    hidden, wrong = 0, []
    for module, tree in kit_modules().items():
        for line, imported in imports_in_functions(tree):
            hidden += 1
            top = imported.split(".")[0]
            if not (top in LAZY_ANYWHERE or top in LAZY_IMPORT_HOME.get(module, ())):
                wrong.append(f"{module}:{line} imports {imported} inside a function")
    assert not wrong, wrong
    assert hidden <= MAX_IMPORTS_IN_FUNCTIONS, f"{hidden} imports inside functions"


def test_the_import_rule_catches_a_hidden_import():
    tree = ast.parse("import os\n\ndef f():\n    import json\n    from data.runs import read_run\n    return json\n")
    assert imports_in_functions(tree) == [(4, "json"), (5, "data.runs")]


def test_a_command_without_flags_is_its_configurations_defaults_and_a_setting_without_a_flag_is_refused():
    import dataclasses

    import pytest

    from classifiers import train as detector_cli
    from classifiers.config import DetectorConfig
    from gan import train as gan_cli
    from gan.config import GanConfig

    cfg = detector_cli.config([])
    assert cfg == dataclasses.replace(DetectorConfig.from_preset(), runs_dir=cfg.runs_dir, data_dir=cfg.data_dir)
    gan = gan_cli.config([])
    for name in ("preset", "stage", "gan_data", "discriminator", "latent_dim", "seed", "precision"):
        assert getattr(gan, name) == getattr(GanConfig, name), name
    assert gan_cli.config(seeds=2, labels="50").labels == "50"
    with pytest.raises(TypeError, match="no setting 'gan_stepz'"):
        gan_cli.config(gan_stepz=10)
