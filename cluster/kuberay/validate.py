"""Check KubeRay manifests offline against the RayCluster / RayJob CRD schemas in crds/.

    python cluster/kuberay/validate.py [MANIFEST ...]     # default: every *.yaml in cluster/kuberay

Two checks per object: the CRD's OpenAPI v3 schema for its apiVersion (types, enums, required fields, formats),
and unknown fields. The API server prunes fields a structural schema does not declare, silently, so a misspelt
`shutdownAfterJobFinish` would be dropped and the cluster never deleted; here it is an error.
"""
from __future__ import annotations

import functools
import sys
from pathlib import Path

import jsonschema
import yaml

HERE = Path(__file__).resolve().parent
CRD_FILES = {"RayCluster": HERE / "crds" / "ray.io_rayclusters.yaml", "RayJob": HERE / "crds" / "ray.io_rayjobs.yaml"}
OBJECT_META_FIELDS = {"name", "namespace", "labels", "annotations", "generateName"}


@functools.cache
def crd(kind: str) -> dict:
    """The CRD, parsed once per process: each is thousands of lines (libyaml's parser when PyYAML has it)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(CRD_FILES[kind].read_text(encoding="utf-8"), Loader=loader)


def crd_schema(kind: str, api_version: str) -> dict:
    if kind not in CRD_FILES:
        raise ValueError(f"no CRD for kind {kind!r} (known: {sorted(CRD_FILES)})")
    group, _, version = api_version.partition("/")
    crd_document = crd(kind)
    if group != crd_document["spec"]["group"]:
        raise ValueError(f"{kind}: apiVersion group {group!r} is not {crd_document['spec']['group']!r}")
    for served in crd_document["spec"]["versions"]:
        if served["name"] == version and served.get("served", False):
            return served["schema"]["openAPIV3Schema"]
    raise ValueError(f"{kind}: version {version!r} is not served by the CRD")


def unknown_fields(value, schema: dict, path: str = "") -> list[str]:
    """Paths of mapping keys the schema does not declare (where it does not preserve unknown fields)."""
    if isinstance(value, dict):
        if schema.get("x-kubernetes-preserve-unknown-fields"):
            return []
        properties, extra = schema.get("properties"), schema.get("additionalProperties")
        found = []
        for key, item in value.items():
            if properties is not None and key in properties:
                found += unknown_fields(item, properties[key], f"{path}.{key}")
            elif isinstance(extra, dict):
                found += unknown_fields(item, extra, f"{path}.{key}")
            elif properties is not None and extra is not True:
                found.append(f"{path}.{key}")
        return found
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [problem for index, item in enumerate(value) for problem in unknown_fields(item, schema["items"], f"{path}[{index}]")]
    return []


def problems(manifest: dict) -> list[str]:
    """Every schema violation and unknown field of one object, as readable lines (empty when it is valid)."""
    if not isinstance(manifest, dict) or "kind" not in manifest or "apiVersion" not in manifest:
        return ["not a Kubernetes object (kind and apiVersion are required)"]
    try:
        schema = crd_schema(manifest["kind"], manifest["apiVersion"])
    except ValueError as error:
        return [str(error)]
    validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker())
    found = [f"{'.'.join(str(part) for part in error.absolute_path) or '(root)'}: {error.message}" for error in validator.iter_errors(manifest)]
    metadata = manifest.get("metadata") or {}
    if not metadata.get("name"):
        found.append("metadata.name is required")
    found += [f"metadata.{key}: unknown field" for key in metadata if key not in OBJECT_META_FIELDS]
    body = {key: value for key, value in manifest.items() if key != "metadata"}
    found += [f"{path.lstrip('.')}: unknown field" for path in unknown_fields(body, {**schema, "properties": {
        key: value for key, value in schema.get("properties", {}).items() if key != "metadata"}})]
    return found


def main(argv: list[str] | None = None) -> int:
    paths = [Path(arg) for arg in (argv if argv is not None else sys.argv[1:])] or sorted(HERE.glob("*.yaml"))
    failed = 0
    for path in paths:
        for manifest in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if manifest is None or manifest.get("kind") not in CRD_FILES:
                continue
            found = problems(manifest)
            failed += bool(found)
            print(f"{path.name}: {manifest['kind']} {manifest['metadata'].get('name')}: {'ok' if not found else 'INVALID'}")
            for problem in found:
                print(f"  {problem}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
