"""Each rule's conda env (envs/*.yaml) provides what the rule's script imports.

A rule's ``conda:`` and ``script:`` come from workflow/rules/*.smk. The script's imports are
followed through the scpert package with the ast, at the granularity Python runs them: the
module-level code of every module that gets imported (class bodies included, since a registry may
hand out any class), and a function's body only when code already reached names the function. So
``scpert.steps``' per-step lazy imports count for the step's rule only. Registries that import
modules by name (``importlib.import_module``) reach every ``scpert.*`` module their module names.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from .conftest import REPO

RULES_DIR = REPO / "workflow/rules"

#: import name -> conda-forge (or pip) package names that provide it
PACKAGES = {
    "anndata": {"anndata"},
    "cell_eval": {"cell-eval"},
    "gseapy": {"gseapy"},
    "h5py": {"h5py"},
    "igraph": {"python-igraph", "igraph"},
    "matplotlib": {"matplotlib", "matplotlib-base"},
    "numpy": {"numpy"},
    "ot": {"pot"},
    "pandas": {"pandas"},
    "pyarrow": {"pyarrow"},
    "rdkit": {"rdkit"},
    "scanpy": {"scanpy"},
    "scipy": {"scipy"},
    "seaborn": {"seaborn"},
    "skmisc": {"scikit-misc"},
    "sklearn": {"scikit-learn"},
    "statsmodels": {"statsmodels"},
    "torch": {"pytorch"},
    "torch_geometric": {"pytorch_geometric", "torch-geometric"},
    "umap": {"umap-learn"},
    "yaml": {"pyyaml"},
}
#: calls that need a package their module does not import: attribute name -> import name
#: (pandas' parquet I/O needs pyarrow; scanpy's HVG flavor seurat_v3, the config default, skmisc)
CALL_NEEDS = {"to_parquet": "pyarrow", "read_parquet": "pyarrow", "highly_variable_genes": "skmisc"}


# -- rules ---------------------------------------------------------------------------------------

RULE_HEADER = re.compile(r"^(?:rule (\w+)|use rule (\w+) as (\w+)(?: with)?|(    )rule):", re.M)
RUNS_CODE = re.compile(r"^    (?:shell|script|wrapper|notebook|cwl):", re.M)


def _directive(block: str, name: str) -> str | None:
    match = re.search(rf"^ +{name}:\s*\"([^\"]+)\"", block, re.M)
    return match.group(1) if match else None


def workflow_rules() -> dict[str, dict]:
    """Rule name -> {"conda": env file, "script": script file, "runs_code": bool, "gpu": bool}
    (paths resolved against the rule file, None where the rule has none; gpu: its resources
    declare ``gpu``). ``use rule`` inherits from its base. A rule defined in a loop (``rule:`` with
    a computed ``name:``, e.g. one evaluate rule per split) is named after its script."""
    rules: dict[str, dict] = {}
    for smk in [REPO / "Snakefile", *sorted(RULES_DIR.glob("*.smk"))]:
        text = smk.read_text()
        headers = list(RULE_HEADER.finditer(text))
        for i, header in enumerate(headers):
            block = text[header.end() : headers[i + 1].start() if i + 1 < len(headers) else None]
            block = re.split(r"^\S", block, maxsplit=1, flags=re.M)[0]  # up to the next top level
            base = header.group(2)
            entry = (
                dict(rules[base])
                if base
                else {"conda": None, "script": None, "runs_code": False, "gpu": False}
            )
            for key in ("conda", "script"):
                value = _directive(block, key)
                if value:
                    entry[key] = (smk.parent / value).resolve()
            entry["runs_code"] = entry["runs_code"] or bool(RUNS_CODE.search(block))
            entry["gpu"] = entry["gpu"] or bool(re.search(r"^ +gpu=", block, re.M))
            name = header.group(1) or header.group(3) or Path(_directive(block, "script")).stem
            rules[name] = entry
    return rules


def script_rules() -> list[tuple[str, dict]]:
    return sorted((name, rule) for name, rule in workflow_rules().items() if rule["script"])


# -- imports -------------------------------------------------------------------------------------


@dataclass
class _Module:
    name: str
    tree: ast.Module
    functions: dict[str, ast.AST] = field(default_factory=dict)

    @classmethod
    def parse(cls, name: str, path: Path) -> _Module:
        tree = ast.parse(path.read_text(), str(path))
        return cls(
            name,
            tree,
            {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)},
        )

    def module_level(self) -> list[ast.AST]:
        """What runs on import: every top-level statement except function bodies (decorators do)."""
        nodes: list[ast.AST] = []
        for node in self.tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                nodes += node.decorator_list
            else:
                nodes.append(node)
        return nodes


class ImportGraph:
    """Third-party imports reachable from a script through the ``scpert`` package under ``src``.

    Units of code are ``(module,)``, what runs on import, and ``(module, function)``, a function's
    body, reached when code already reached names the function.
    """

    def __init__(self, src: Path = REPO / "src") -> None:
        self.src = src
        self._modules: dict[str, _Module | None] = {}

    def module(self, name: str) -> _Module | None:
        if name not in self._modules:
            base = self.src.joinpath(*name.split("."))
            path = next(
                (p for p in (base.with_suffix(".py"), base / "__init__.py") if p.is_file()), None
            )
            self._modules[name] = _Module.parse(name, path) if path else None
        return self._modules[name]

    def third_party(self, script: Path) -> set[str]:
        """Top-level names of the non-stdlib modules ``script`` needs."""
        found: set[str] = set()
        seen: set[tuple] = set()
        main = _Module(script.stem, ast.parse(script.read_text(), str(script)))
        todo = [(main, list(main.tree.body))]
        while todo:
            mod, nodes = todo.pop()
            for unit in self._reached(mod, nodes, found) - seen:
                seen.add(unit)
                target = self.module(unit[0])
                if target is None:
                    continue
                if len(unit) == 1:
                    todo.append((target, target.module_level()))
                elif unit[1] in target.functions:
                    todo.append((target, [target.functions[unit[1]]]))
                else:  # a name the module imports (a package re-exporting a function)
                    todo.append((target, [ast.Name(unit[1], ast.Load())]))
        return {
            name for name in found if name not in sys.stdlib_module_names and name != "__future__"
        }

    def _reached(self, mod: _Module, nodes: list[ast.AST], found: set[str]) -> set[tuple]:
        """Units that ``nodes`` of ``mod`` import or name; their third-party imports go to
        ``found``. Names resolve through the module's top-level imports and those in ``nodes``."""
        walked = [n for node in nodes for n in ast.walk(node)]
        names: dict[str, tuple] = {}  # local name -> the unit it stands for
        for node in mod.tree.body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                self._bind(node, mod, names, set())
        units: set[tuple] = set()
        for node in walked:
            if isinstance(node, ast.Import | ast.ImportFrom):
                units |= self._bind(node, mod, names, found)
        for node in walked:
            if isinstance(node, ast.Name):
                if node.id in names:
                    units.add(names[node.id])
                elif node.id in mod.functions:
                    units.add((mod.name, node.id))
            elif isinstance(node, ast.Attribute):
                if node.attr in CALL_NEEDS:
                    found.add(CALL_NEEDS[node.attr])
                owner = names.get(node.value.id) if isinstance(node.value, ast.Name) else None
                if owner and len(owner) == 1:  # module.attribute
                    sub = f"{owner[0]}.{node.attr}"
                    units.add((sub,) if self.module(sub) else (owner[0], node.attr))
            if (
                getattr(node, "id", None) == "import_module"
                or getattr(node, "attr", None) == "import_module"
            ):
                units |= {
                    (s.value,)
                    for s in ast.walk(mod.tree)
                    if isinstance(s, ast.Constant)
                    and isinstance(s.value, str)
                    and s.value.startswith("scpert.")
                    and self.module(s.value)
                }
        return units

    def _bind(self, node, mod: _Module, names: dict, found: set[str]) -> set[tuple]:
        """Bind the names an import statement defines; return the scpert modules it runs (with
        their parent packages) and add third-party names to ``found``."""
        if isinstance(node, ast.Import):
            sources = [(alias.name, alias) for alias in node.names]
        else:
            source = node.module or ""
            if node.level:
                package = mod.name.rsplit(".", node.level)[0]
                source = f"{package}.{source}" if source else package
            sources = [(source, alias) for alias in node.names]
        units: set[tuple] = set()
        for source, alias in sources:
            parts = source.split(".")
            if parts[0] != "scpert":
                found.add(parts[0])
                continue
            units |= {(".".join(parts[:i]),) for i in range(1, len(parts) + 1)}
            if isinstance(node, ast.Import):
                names[alias.asname or parts[0]] = (source if alias.asname else parts[0],)
            else:
                sub = f"{source}.{alias.name}"
                if self.module(sub):  # a submodule runs on import; a function once it is named
                    units.add((sub,))
                names[alias.asname or alias.name] = (
                    (sub,) if self.module(sub) else (source, alias.name)
                )
        return units


# -- env files -----------------------------------------------------------------------------------

SPEC = re.compile(r"^([A-Za-z0-9_.-]+)\s*(?:==|=|>=|<=|~=|!=|<|>)?\s*(\S*)")


def env_packages(path: Path) -> dict[str, str]:
    """Package name -> version spec of a conda env file (conda and pip dependencies)."""
    env = yaml.safe_load(path.read_text())
    assert isinstance(env, dict) and env.get("dependencies"), f"{path}: no dependencies"
    packages = {}
    for dep in env["dependencies"]:
        for spec in dep["pip"] if isinstance(dep, dict) else [dep]:
            match = SPEC.match(spec)
            assert match, f"{path}: cannot parse dependency '{spec}'"
            packages[match.group(1).lower()] = match.group(2)
    return packages


# -- tests ---------------------------------------------------------------------------------------


def test_rules_are_read_with_their_envs_and_scripts():
    rules = workflow_rules()
    assert rules["train"]["conda"] == REPO / "envs/torch.yaml"
    assert rules["train"]["script"] == REPO / "workflow/scripts/train.py"
    assert rules["heatmap"]["conda"] == REPO / "envs/plots.yaml"
    assert rules["all"] == {"conda": None, "script": None, "runs_code": False, "gpu": False}
    assert rules["sample"]["gpu"] and not rules["evaluate"]["gpu"]


def test_every_rule_that_runs_code_has_an_existing_conda_env():
    for name, rule in workflow_rules().items():
        if rule["runs_code"]:
            assert rule["conda"] is not None, f"rule {name}: no conda: directive"
            assert rule["conda"].is_file(), f"rule {name}: {rule['conda']} does not exist"


def test_every_env_file_is_used_pinned_and_on_conda_forge():
    used = {rule["conda"] for rule in workflow_rules().values() if rule["conda"]}
    for path in sorted((REPO / "envs").glob("*.yaml")):
        assert path in used, f"{path.name}: no rule uses it"
        env = yaml.safe_load(path.read_text())
        assert "conda-forge" in env["channels"], path.name
        packages = env_packages(path)
        assert packages.get("python", "").startswith("3."), f"{path.name}: python not pinned"
        unpinned = sorted(name for name, version in packages.items() if not version)
        assert not unpinned, f"{path.name}: unpinned {unpinned}"


@pytest.mark.parametrize("name,rule", script_rules(), ids=[name for name, _ in script_rules()])
def test_env_provides_what_the_script_imports(name, rule):
    imported = ImportGraph().third_party(rule["script"])
    unknown = sorted(imported - set(PACKAGES))
    assert not unknown, f"add the conda package names of {unknown} to PACKAGES in {__file__}"
    provided = set(env_packages(rule["conda"]))
    missing = sorted(mod for mod in imported if not PACKAGES[mod] & provided)
    assert not missing, (
        f"rule {name}: {rule['conda'].name} lacks {missing} (via {rule['script'].name})"
    )


def _tree(root: Path, files: dict[str, str]) -> None:
    for name, code in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(code)


def test_import_graph_follows_what_runs(tmp_path):
    """The script calls hub.step_a only: hub's top-level import and step_a's lazy import count,
    step_b's lazy torch does not; a registry reaches modules named by string, and their class
    bodies count; relative imports resolve; parquet output needs pyarrow."""
    _tree(
        tmp_path / "src/scpert",
        {
            "__init__.py": "",
            "hub.py": "import pandas\n\ndef step_a():\n    from scpert.a import run\n    run()\n\n"
            "def step_b():\n    import torch\n",
            "a.py": "MODULES = ('scpert.reg',)\n\n\ndef run():\n    import importlib\n\n"
            "    for m in MODULES:\n        importlib.import_module(m)\n    helper()\n\n\n"
            "def helper(df):\n    df.to_parquet('x')\n\n\ndef unused():\n    import sklearn\n",
            "reg.py": "from .util import X\n\n\nclass M:\n    def fit(self):\n        import scipy.sparse\n",
            "util.py": "import numpy as np\n\nX = np.zeros(1)\n",
        },
    )
    script = tmp_path / "script.py"
    script.write_text("from scpert import hub\n\nhub.step_a()\n")
    graph = ImportGraph(tmp_path / "src")
    assert graph.third_party(script) == {"pandas", "scipy", "numpy", "pyarrow"}


def test_lint_has_no_conda_warnings():
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("snakemake")), "--lint"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert "conda environment" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
