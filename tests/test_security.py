"""What a run does with downloaded content and with the credentials around it.

- No code in the package turns downloaded bytes into objects that can run
  code: no ``eval``/``exec``, no unpickling, ``yaml`` only with a safe
  loader, ``torch.load`` only with ``weights_only=True``, ``np.load`` never
  with ``allow_pickle=True``. Checked on the syntax tree, so comments and
  strings do not count and aliases (``import numpy as np``) do.
- Keys that would name a file outside the cache are refused before anything
  is written (the whole workflow: ``test_faults_workflow.py``).
- Anonymous clients neither sign requests nor send credentials planted in
  the environment (the whole workflow: ``test_faults_workflow.py``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pandas as pd
import pytest

from tests.support.faultproxy import FaultProxy
from workflow_scripts.fetch.gallery import PlateRef
from workflow_scripts.fetch.load_data import LoadDataError
from workflow_scripts.fetch.objects import ObjectRecord, download_objects
from workflow_scripts.fetch.plate import plate_locations
from workflow_scripts.fetch.s3 import HostileKeyError, S3Location, make_client, parse_s3_url

PACKAGE = Path(__file__).resolve().parents[1] / "workflow_scripts"

# Calls that run code from their input, whatever their arguments.
ALWAYS_UNSAFE = {
    "eval": "runs text as code",
    "exec": "runs text as code",
    "builtins.eval": "runs text as code",
    "builtins.exec": "runs text as code",
    "pickle.load": "unpickling runs code from the file",
    "pickle.loads": "unpickling runs code from the bytes",
    "pickle.Unpickler": "unpickling runs code from the file",
    "dill.load": "unpickling runs code from the file",
    "dill.loads": "unpickling runs code from the bytes",
    "cloudpickle.load": "unpickling runs code from the file",
    "cloudpickle.loads": "unpickling runs code from the bytes",
    "joblib.load": "unpickling runs code from the file",
    "pandas.read_pickle": "unpickling runs code from the file",
    "marshal.loads": "loads code objects",
    "yaml.unsafe_load": "builds arbitrary Python objects",
    "yaml.full_load": "builds Python objects",
}
SAFE_YAML_LOADERS = {"yaml.SafeLoader", "yaml.CSafeLoader"}


def _aliases(tree: ast.Module) -> dict[str, str]:
    """Local name -> what it was imported as (``np`` -> ``numpy``, ``load`` -> ``torch.load``)."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                names[alias.asname or alias.name.split(".")[0]] = (
                    alias.name if alias.asname else alias.name.split(".")[0]
                )
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return names


def _qualified(node: ast.expr, aliases: dict[str, str]) -> str | None:
    """``np.load`` -> ``numpy.load``; None for calls on anything but a name (``model.eval()`` stays ``model.eval``)."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([aliases.get(node.id, node.id), *reversed(parts)])


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_constant(node: ast.expr | None, value: object) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def _unsafe(call: ast.Call, name: str, aliases: dict[str, str]) -> str | None:
    """Why this call may run code from what it reads, or None."""
    if name in ALWAYS_UNSAFE:
        return ALWAYS_UNSAFE[name]
    if name in ("yaml.load", "yaml.load_all"):
        loader = _keyword(call, "Loader") or (call.args[1] if len(call.args) > 1 else None)
        if loader is None or _qualified(loader, aliases) not in SAFE_YAML_LOADERS:
            return "yaml.load without SafeLoader builds arbitrary objects"
    if name == "torch.load" and not _is_constant(_keyword(call, "weights_only"), True):
        return "torch.load without weights_only=True unpickles"
    allow_pickle = _keyword(call, "allow_pickle")
    if name == "numpy.load" and allow_pickle is not None and not _is_constant(allow_pickle, False):
        return "np.load with allow_pickle unpickles object arrays"
    return None


def unsafe_calls(source: str, where: str) -> list[str]:
    """Every call in ``source`` that could run code from what it reads, as ``where:line: name (why)``."""
    tree = ast.parse(source, filename=where)
    aliases = _aliases(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = _qualified(node.func, aliases)
            why = name and _unsafe(node, name, aliases)
            if why:
                found.append(f"{where}:{node.lineno}: {name} ({why})")
    return found


def test_the_package_never_loads_content_in_a_way_that_runs_code():
    sources = sorted(PACKAGE.rglob("*.py"))
    assert len(sources) > 50
    found = [hit for path in sources for hit in unsafe_calls(path.read_text(), str(path.relative_to(PACKAGE.parent)))]
    assert found == []


@pytest.mark.parametrize(
    "snippet",
    [
        "eval(text)",
        "exec(text)",
        "import builtins\nbuiltins.eval(text)",
        "import pickle\npickle.load(handle)",
        "from pickle import loads\nloads(data)",
        "import pickle as p\np.Unpickler(handle).load()",
        "import pandas as pd\npd.read_pickle(path)",
        "import joblib\njoblib.load(path)",
        "import yaml\nyaml.load(text)",
        "import yaml\nyaml.load(text, Loader=yaml.Loader)",
        "import yaml\nyaml.load(text, yaml.FullLoader)",
        "import yaml\nyaml.unsafe_load(text)",
        "import torch\ntorch.load(path)",
        "import torch\ntorch.load(path, weights_only=False)",
        "from torch import load\nload(path, map_location='cpu')",
        "import numpy as np\nnp.load(path, allow_pickle=True)",
        "import numpy\nnumpy.load(path, allow_pickle=flag)",
    ],
)
def test_the_scan_finds_each_unsafe_call(snippet):
    assert len(unsafe_calls(snippet, "snippet.py")) == 1


@pytest.mark.parametrize(
    "snippet",
    [
        "model.eval()",
        "# eval(text) in a comment\nx = 'pickle.load(handle)'",
        "import yaml\nyaml.safe_load(text)",
        "import yaml\nyaml.load(text, Loader=yaml.SafeLoader)",
        "import yaml\nyaml.load(text, yaml.CSafeLoader)",
        "import torch\ntorch.load(path, map_location='cpu', weights_only=True)",
        "import numpy as np\nnp.load(path)",
        "import numpy as np\nnp.load(path, allow_pickle=False)",
        "import pickle\npickle.dumps(value)",
    ],
)
def test_the_scan_passes_safe_calls(snippet):
    assert unsafe_calls(snippet, "snippet.py") == []


HOSTILE_KEYS = [
    ("../../etc/passwd", "'..'"),
    ("images/../../../escape.tif", "'..'"),
    ("images/./field.tif", "'.'"),
    ("/etc/passwd", "absolute"),
    ("images//field.tif", "empty segment"),
    ("images\\..\\..\\escape.tif", "backslash"),
    ("images/%2e%2e/escape.tif", "percent-encoded"),
    ("images/..%2Fescape.tif", "percent-encoded"),
    ("images/%5C..%5Cescape.tif", "percent-encoded"),
    ("images/field\x00.tif", "control character"),
    ("images/field\n.tif", "control character"),
]
SAFE_KEYS = [
    "cpg0016-jump/source_4/images/2021_04_26_Batch1/images/BR00117035__2021-05-02T16_02_51-Measurement1/Images/r01c01f01p01-ch1sk1fk1fl1.tiff",
    "source_3/images/plate 1/Images/field..tiff",
    "source_4/workspace/analysis/batch/plate/analysis/",
]


@pytest.mark.parametrize(("key", "why"), HOSTILE_KEYS)
def test_hostile_keys_are_refused_naming_the_key(key, why):
    with pytest.raises(HostileKeyError, match=why) as raised:
        parse_s3_url(f"s3://cellpainting-gallery/{key}")
    assert repr(key) in str(raised.value)


@pytest.mark.parametrize("bucket", ["..", ".", "-bucket", "bucket/../x", ""])
def test_hostile_buckets_are_refused(bucket):
    with pytest.raises(HostileKeyError, match="not a bucket name"):
        S3Location(bucket, "images/field.tif")


@pytest.mark.parametrize("key", SAFE_KEYS)
def test_gallery_keys_are_accepted(key):
    assert S3Location("cellpainting-gallery", key).key == key


def test_hostile_keys_in_load_data_are_refused_naming_the_plate_and_every_key():
    good = "s3://cellpainting-gallery/source_1/images/b/p/r01c01f01p01-ch1.tiff"
    sites = pd.DataFrame(
        {"URL_OrigDNA": [good, "s3://cellpainting-gallery//etc/cron.d/x"], "URL_OrigRNA": [good, good]}
    )
    sites["URL_OrigAGP"] = ["s3://cellpainting-gallery/a/../../x.tif", "file:///etc/passwd"]
    with pytest.raises(LoadDataError, match="plate P1: LoadData names 3 object") as raised:
        plate_locations(sites, PlateRef("d", "s", "b", "P1"))
    for named in ("'/etc/cron.d/x'", "'a/../../x.tif'", "file:///etc/passwd"):
        assert named in str(raised.value)


def test_listed_keys_never_become_paths_outside_the_cache(tmp_path):
    """Keys that come from a listing (a backend's site folders) meet the same refusal before any request."""
    client = make_client("http://127.0.0.1:9", anonymous=True)  # nothing listens: no request may be needed
    cache = tmp_path / "cache"
    for key in ("a/../../../escape.tif", "/tmp/escape.tif"):
        listed = ObjectRecord("cellpainting-gallery", key, 10, "0" * 32, None)
        with pytest.raises(HostileKeyError, match="refusing key"):
            download_objects(client, [listed], cache)
    with pytest.raises(HostileKeyError, match="names a folder"):
        download_objects(client, [S3Location("cellpainting-gallery", "source_4/folder/")], cache)
    assert list(tmp_path.rglob("*")) == []


BUCKET = "security-test"
KEY = "images/field.tif"


@pytest.fixture(scope="module")
def upstream(s3_server) -> str:
    admin = s3_server.admin_client()
    admin.create_bucket(Bucket=BUCKET, ACL="public-read")
    admin.put_object(Bucket=BUCKET, Key=KEY, Body=b"field", ACL="public-read")
    return s3_server.endpoint_url


def _sent(proxy: FaultProxy) -> list[str]:
    return [f"{r.method} {r.path}\n" + "\n".join(f"{n}: {v}" for n, v in r.headers) for r in proxy.requests]


def test_anonymous_clients_send_no_signature_nor_planted_credentials(upstream, monkeypatch):
    planted = {
        "AWS_ACCESS_KEY_ID": "AKIAPLANTEDKEYID0001",
        "AWS_SECRET_ACCESS_KEY": "planted-secret",
        "AWS_SESSION_TOKEN": "planted-token",
    }
    for name, value in planted.items():
        monkeypatch.setenv(name, value)
    with FaultProxy(upstream) as proxy:
        client = make_client(proxy.endpoint_url, anonymous=True)
        assert client.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == b"field"
        client.head_object(Bucket=BUCKET, Key=KEY)
        anonymous = _sent(proxy)
    with FaultProxy(upstream) as proxy:  # the same check sees credentials where a client does send them
        make_client(proxy.endpoint_url, anonymous=False).head_object(Bucket=BUCKET, Key=KEY)
        signed = _sent(proxy)
    assert len(anonymous) == 2
    for request in anonymous:
        assert "authorization:" not in request.lower() and "x-amz-security-token" not in request.lower(), request
        assert not any(value in request for value in planted.values()), request
    assert "authorization: aws4-hmac-sha256 credential=akiaplantedkeyid0001" in signed[0].lower()
    assert "planted-token" in signed[0]
