"""The conda environments and the job image install exactly the locked packages the workflow's jobs need.

"Needed" is derived, not listed: the runtime dependencies pyproject.toml
declares and the third-party modules the stages import (following the
package's own imports from every `python -m workflow_scripts.<stage>` in
rules/), with everything they require in turn; the versions are the lock's.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib import metadata

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from snakemake_interface_storage_plugins.registry import StoragePluginRegistry

from tests.support.workflow import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
# Snakemake and its plugins run the jobs from outside a rule's environment;
# moto is the demo's and the tests' S3 server.
NOT_IN_JOBS = re.compile(r"^(snakemake.*|moto)$")
# pip freeze, which writes the lock, leaves out the packaging tools (torch needs
# setuptools): the environments leave them to pip too.
PACKAGING_TOOLS = {"pip", "setuptools", "wheel", "distribute"}
CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"


def locked() -> dict[str, str]:
    """requirements.lock as {canonical name: version}."""
    pins = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    return pins


def _module_files(module: str) -> list:
    """The files Python runs for ``import module`` (a package: its __init__ and, run with -m, its __main__)."""
    path = REPO.joinpath(*module.split("."))
    if path.is_dir():
        return [file for file in (path / "__init__.py", path / "__main__.py") if file.exists()]
    file = path.with_suffix(".py")
    return [file] if file.exists() else []


def stage_imports() -> set[str]:
    """Top-level third-party modules that the rules' stages import, through the package's own imports."""
    rules = "".join(path.read_text() for path in (REPO / "rules").glob("*.smk"))
    pending = sorted(set(re.findall(r"python -m (workflow_scripts\.\w+)", rules)))
    assert pending, "no stage found in rules/*.smk"
    seen, third_party = set(), set()
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        seen.add(module)
        for file in _module_files(module):
            for node in ast.walk(ast.parse(file.read_text())):
                names = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [f"{node.module}.{alias.name}" for alias in node.names]
                    names = [name if _module_files(name) else node.module for name in names]
                for name in names:
                    top = name.split(".")[0]
                    if top == "workflow_scripts":
                        pending.append(name)
                    elif top not in sys.stdlib_module_names:
                        third_party.add(top)
    return third_party


def needed() -> dict[str, str]:
    """Every distribution the jobs need, with the version they must have."""
    providers = metadata.packages_distributions()
    roots = [Requirement(dep) for dep in PYPROJECT["dependencies"]]
    roots = [req for req in roots if not NOT_IN_JOBS.match(canonicalize_name(req.name))]
    roots += [Requirement(dist) for module in sorted(stage_imports()) for dist in providers[module]]
    extras: dict[str, set[str]] = {}
    pending = [(canonicalize_name(req.name), set(req.extras)) for req in roots]
    while pending:
        name, wanted = pending.pop()
        if name in extras and wanted <= extras[name]:
            continue
        extras[name] = extras.get(name, set()) | wanted
        for line in metadata.distribution(name).requires or []:
            req = Requirement(line)
            if req.marker is None or any(req.marker.evaluate({"extra": extra}) for extra in extras[name] or {""}):
                pending.append((canonicalize_name(req.name), set(req.extras)))
    lock = locked()
    missing = sorted(set(extras) - set(lock) - PACKAGING_TOOLS)
    assert not missing, f"needed but not in requirements.lock: {missing}"
    return {name: lock[name] for name in extras if name in lock}


def environment(name: str) -> dict:
    """envs/{name}.yaml, parsed."""
    return yaml.safe_load((REPO / "envs" / f"{name}.yaml").read_text())


def pip_section(env: dict) -> list[str]:
    sections = [dep["pip"] for dep in env["dependencies"] if isinstance(dep, dict)]
    assert len(sections) == 1
    return sections[0]


def pins(env: dict) -> dict[str, str]:
    """The pip packages of an environment; each must be pinned with ==."""
    packages = [line for line in pip_section(env) if not line.startswith("-")]
    unpinned = [line for line in packages if "==" not in line]
    assert not unpinned, f"unpinned: {unpinned}"
    return {canonicalize_name(line.split("==")[0]): line.split("==")[1] for line in packages}


def index_options(env: dict) -> list[str]:
    return [line for line in pip_section(env) if line.startswith("-")]


@pytest.fixture(scope="module")
def expected() -> dict[str, str]:
    return needed()


def test_the_stages_need_what_they_import(expected):
    """A cross-check of the derivation on modules whose package names differ from their import names."""
    assert {"torch", "scikit-image", "scikit-learn", "pyyaml", "umap-learn", "jsonschema"} <= set(expected)
    assert not {"snakemake", "moto", "pytest"} & set(expected)


@pytest.mark.parametrize("name", ["cpu", "gpu"])
def test_environment_pins_exactly_the_locked_packages_the_jobs_need(name, expected):
    env = pins(environment(name))
    assert sorted(set(expected) - set(env)) == [], "missing"
    assert sorted(set(env) - set(expected)) == [], "not needed"
    assert {package: version for package, version in env.items() if version != expected[package]} == {}


@pytest.mark.parametrize("name", ["cpu", "gpu"])
def test_environment_has_the_workflows_python(name):
    conda = [dep for dep in environment(name)["dependencies"] if isinstance(dep, str)]
    python = next(dep for dep in conda if dep.startswith("python="))
    assert SpecifierSet(PYPROJECT["requires-python"]).contains(python.split("=")[1] + ".0")
    assert environment(name)["channels"] == ["conda-forge", "nodefaults"]


def test_cpu_environment_takes_torch_from_the_cpu_index():
    assert index_options(environment("cpu")) == [f"--extra-index-url {CPU_TORCH_INDEX}"]


def test_gpu_environment_is_the_cpu_one_with_pypis_cuda_torch():
    """PyPI's torch is the CUDA build, and brings the NVIDIA packages it pins itself."""
    cpu, gpu = environment("cpu"), environment("gpu")
    assert index_options(gpu) == []
    assert pins(gpu) == pins(cpu)
    assert [dep for dep in gpu["dependencies"] if isinstance(dep, str)] == [
        dep for dep in cpu["dependencies"] if isinstance(dep, str)
    ]


def dockerfile() -> list[tuple[str, str]]:
    """envs/Dockerfile as (INSTRUCTION, arguments), continuation lines joined, comments left out."""
    text = (REPO / "envs" / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    return [tuple(line.split(None, 1)) for line in joined.splitlines() if line.strip()]


def instruction(name: str) -> list[str]:
    return [arguments for keyword, arguments in dockerfile() if keyword == name]


def test_image_installs_the_lock_with_the_cpu_torch_unless_told_otherwise():
    (base,) = instruction("FROM")
    assert SpecifierSet(PYPROJECT["requires-python"]).contains(re.match(r"python:(\d+\.\d+)", base).group(1) + ".0")
    assert f"TORCH_INDEX={CPU_TORCH_INDEX}" in instruction("ARG")
    assert "requirements.lock ./" in instruction("COPY")
    install = [run for run in instruction("RUN") if "-r requirements.lock" in run]
    assert install == ['pip install ${TORCH_INDEX:+--extra-index-url "$TORCH_INDEX"} -r requirements.lock']


def test_image_carries_the_workflow_sources():
    """What Snakemake reads to run a job: the Snakefile, its rules, config and envs, and the package."""
    copied = {source for arguments in instruction("COPY") for source in arguments.split()[:-1]}
    assert {"Snakefile", "rules", "workflow_scripts", "config", "envs", "profiles", "pyproject.toml"} <= copied
    assert ("WORKDIR", "/workflow") in dockerfile()


def test_image_deploys_the_storage_plugin_offline():
    """Each job first pip-installs the storage plugins; the image holds their locked wheels and no index."""
    deployed = sorted(
        StoragePluginRegistry().get_plugin_package_name(name)
        for name in StoragePluginRegistry().get_registered_plugins()
    )
    download = next(run for run in instruction("RUN") if run.startswith("pip download"))
    assert download == f"pip download --dest /opt/snakemake-wheels -c requirements.lock {' '.join(deployed)}"
    settings = dict(item.split("=", 1) for item in instruction("ENV")[-1].split())
    assert settings == {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": "/opt/snakemake-wheels"}
