#!/usr/bin/env bash
# Validates the deployment files under infra/, offline once its tools are
# cached (first run: PyPI only):
#
#   - every infra/k8s/*.yaml document against the Kubernetes $K8S_VERSION
#     JSON schemas bundled in the PyPI package kubernetes-validate, strict
#     (an unknown or misspelt field fails, and so does a kind it has no schema
#     for); kustomization.yaml is not a Kubernetes object: it must parse and
#     list every manifest here except secret.example.yaml;
#   - infra/compose.yaml against the Compose JSON schema shipped in the wheel
#     of docker-compose 1.29.2 (downloaded, not installed: only its
#     compose/config/compose_spec.json is used), with jsonschema. That schema
#     predates some newer Compose keys; the file is checked as written
#     (no ${VAR} interpolation).
#
# Duplicate keys in a YAML mapping fail everywhere. One line per file, then
# `infra: N files valid`; non-zero exit on any failure.
#
#   ./scripts/validate-infra.sh
#   COMPOSE_FILE_OVERRIDE=/tmp/compose.yaml ./scripts/validate-infra.sh
#       check that file instead of infra/compose.yaml
#   K8S_DIR_OVERRIDE=/tmp/k8s ./scripts/validate-infra.sh
#       check the manifests in that directory instead of infra/k8s
#
# Tools: a venv in ~/.cache/simmer/infra-venv with the pinned packages below
# (reinstalled only when the pins change) and the docker-compose wheel in
# ~/.cache/simmer/infra-wheels (checked against its SHA-256).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CACHE="$HOME/.cache/simmer"
VENV="$CACHE/infra-venv"
K8S_VERSION="1.33.0"
PINS=(
    "kubernetes-validate==1.37.0"
    "jsonschema==4.26.0"
    "PyYAML==6.0.3"
    # their dependencies, pinned too
    "attrs==26.1.0"
    "importlib_resources==7.1.0"
    "jsonschema-specifications==2025.9.1"
    "packaging==26.4"
    "referencing==0.37.0"
    "rpds-py==2026.9.1"
    "typing_extensions==4.16.0"
)
COMPOSE_VERSION="1.29.2"
COMPOSE_WHEEL="docker_compose-$COMPOSE_VERSION-py2.py3-none-any.whl"
COMPOSE_WHEEL_SHA256="8d5589373b35c8d3b1c8c1182c6e4a4ff14bffa3dd0b605fcd08f73c94cef809"
WHEELS="$CACHE/infra-wheels"
COMPOSE_SCHEMA="$WHEELS/compose_spec-$COMPOSE_VERSION.json"
K8S_DIR="${K8S_DIR_OVERRIDE:-infra/k8s}"
COMPOSE_FILE="${COMPOSE_FILE_OVERRIDE:-infra/compose.yaml}"

if ! printf '%s\n' "${PINS[@]}" | cmp -s - "$VENV/pins.txt" 2>/dev/null; then
    rm -rf "$VENV"
    python3 -m venv "$VENV" 2>/dev/null || {
        [ "$(id -u)" = 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        python3 -m venv "$VENV"
    }
    "$VENV/bin/pip" install -q --disable-pip-version-check "${PINS[@]}"
    printf '%s\n' "${PINS[@]}" >"$VENV/pins.txt"
fi

if [ ! -s "$COMPOSE_SCHEMA" ]; then
    mkdir -p "$WHEELS"
    [ -f "$WHEELS/$COMPOSE_WHEEL" ] ||
        "$VENV/bin/pip" download -q --disable-pip-version-check --no-deps --only-binary :all: \
            -d "$WHEELS" "docker-compose==$COMPOSE_VERSION"
    echo "$COMPOSE_WHEEL_SHA256  $WHEELS/$COMPOSE_WHEEL" | sha256sum -c --quiet - || {
        rm -f "$WHEELS/$COMPOSE_WHEEL"
        echo "$COMPOSE_WHEEL: unexpected SHA-256" >&2
        exit 1
    }
    "$VENV/bin/python" - "$WHEELS/$COMPOSE_WHEEL" "$COMPOSE_SCHEMA" <<'PY'
import os, sys, zipfile
wheel, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, open(out + ".tmp", "wb") as f:
    f.write(z.read("compose/config/compose_spec.json"))
os.replace(out + ".tmp", out)
PY
fi

exec "$VENV/bin/python" - "$K8S_DIR" "$COMPOSE_FILE" "$COMPOSE_SCHEMA" "$K8S_VERSION" <<'PY'
import glob, json, os, sys
from importlib.metadata import version as installed

import jsonschema
import yaml
from kubernetes_validate import utils as kv
from kubernetes_validate.version import __version__ as kv_version

k8s_dir, compose_file, compose_schema, k8s_version = sys.argv[1:]
NOT_LISTED = {"kustomization.yaml", "secret.example.yaml"}


class UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key twice in one mapping (kubectl does too)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor`: its keys may be overridden here
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_all(path):
    with open(path) as f:
        return [d for d in yaml.load_all(f, Loader=UniqueKeyLoader) if d is not None]


def where(path):
    return "/".join(str(p) for p in path) or "(top)"


def check_kustomization(path):
    (doc,) = load_all(path)
    if doc.get("kind") != "Kustomization":
        raise ValueError("kind is not Kustomization")
    resources = doc.get("resources") or []
    here = os.path.dirname(path)
    missing = [r for r in resources if not os.path.exists(os.path.join(here, r))]
    if missing:
        raise ValueError(f"lists missing files: {', '.join(missing)}")
    manifests = {os.path.basename(p) for p in glob.glob(os.path.join(here, "*.yaml"))}
    unlisted = sorted(manifests - NOT_LISTED - set(resources))
    if unlisted:
        raise ValueError(f"does not list: {', '.join(unlisted)}")
    if "secret.example.yaml" in resources:
        raise ValueError("lists secret.example.yaml (an example, never applied)")
    return f"kustomization, {len(resources)} resources"


def check_manifest(path):
    docs = load_all(path)
    if not docs:
        raise ValueError("no Kubernetes object")
    names = []
    for doc in docs:
        if not isinstance(doc, dict) or not {"apiVersion", "kind"} <= doc.keys():
            raise ValueError("a document without apiVersion and kind")
        name = f"{doc['kind']}/{(doc.get('metadata') or {}).get('name', '?')}"
        try:
            version = kv.validate(doc, k8s_version, strict=True)
        except kv.ValidationError as e:
            raise ValueError(f"{name}: {where(e.path)}: {e.message}")
        except (kv.SchemaNotFoundError, kv.InvalidSchemaError) as e:
            raise ValueError(f"{name}: {e.message}")
        names.append(name)
    return f"{', '.join(names)}; Kubernetes {version} strict"


def check_compose(path):
    with open(compose_schema) as f:
        schema = json.load(f)
    (doc,) = load_all(path)
    # Its "$schema" says http://json-schema.org/draft/2019-09/schema#, which
    # jsonschema does not recognise (it knows the https:// id): name the draft.
    validator_class = jsonschema.Draft201909Validator
    validator_class.check_schema(schema)
    errors = sorted(validator_class(schema).iter_errors(doc), key=lambda e: list(e.path))
    if errors:
        raise ValueError("; ".join(f"{where(e.path)}: {e.message}" for e in errors[:10])
                         + (f" (and {len(errors) - 10} more)" if len(errors) > 10 else ""))
    return f"Compose schema of docker-compose 1.29.2, {len(doc.get('services') or {})} services"


checks = []
k8s_files = sorted(glob.glob(os.path.join(k8s_dir, "*.yaml")) + glob.glob(os.path.join(k8s_dir, "*.yml")))
if not k8s_files:
    checks.append((k8s_dir, None, f"{k8s_dir}: no manifests"))
for path in k8s_files:
    is_kustomization = os.path.basename(path) == "kustomization.yaml"
    checks.append((path, check_kustomization if is_kustomization else check_manifest, None))
if os.path.exists(compose_file):
    checks.append((compose_file, check_compose, None))
else:
    checks.append((compose_file, None, f"{compose_file} missing"))

print(f"kubernetes-validate {kv_version} (bundled schemas, Kubernetes {k8s_version}), "
      f"jsonschema {installed('jsonschema')}, PyYAML {yaml.__version__}")
failed = 0
for path, check, problem in checks:
    if problem is None:
        try:
            print(f"ok    {path} ({check(path)})")
            continue
        except (ValueError, yaml.YAMLError) as e:
            problem = f"{path}: {e}"
    failed += 1
    print(f"FAIL  {problem}")

if failed:
    print(f"infra: {failed} of {len(checks)} files failed")
    sys.exit(1)
print(f"infra: {len(checks)} files valid")
PY
