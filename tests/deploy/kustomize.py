"""A small, strict kustomize renderer for the tests (no kustomize binary on PyPI).

It implements exactly the subset of kustomize that ``k8s/`` uses and refuses anything
else, so a kustomization that starts using another feature fails here loudly instead of
rendering wrongly:

- ``resources``: YAML files and directories holding a ``kustomization.yaml``;
- ``namespace``: set on every object except Namespaces (all of ours are namespaced);
- ``images``: ``newName``/``newTag``/``digest`` for containers of Deployments, StatefulSets, Jobs;
- ``replicas``: ``spec.replicas`` of the named Deployments/StatefulSets;
- ``patches``: inline JSON6902 patches (a YAML list of add/replace/remove operations)
  with a ``target`` of ``kind`` and an optional anchored-regex ``name``;
- ``secretGenerator``: a Secret from ``envs`` files (``KEY=value`` lines), with
  ``options.disableNameSuffixHash: true`` (so references need no rewriting) and
  optional ``options.labels``; values base64-encoded under ``data``, as kustomize does.

Where ``kubectl kustomize`` exists (this machine image has it), a test renders both
ways and compares, so this renderer cannot drift from the real tool unnoticed.
"""

from __future__ import annotations

import base64
import copy
import re
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]

_KNOWN_KEYS = {
    "apiVersion", "kind", "resources", "namespace", "images", "replicas", "patches",
    "secretGenerator",
}  # fmt: skip


class UnsupportedKustomization(Exception):
    pass


def load_documents(path: Path) -> list[Obj]:
    docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    for doc in docs:
        if not isinstance(doc, dict) or "kind" not in doc:
            raise UnsupportedKustomization(f"{path}: not a Kubernetes object: {doc!r:.80}")
    return docs


def render(directory: Path) -> list[Obj]:
    """The objects ``kubectl kustomize directory`` would print (in no particular order)."""
    spec = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(spec) - _KNOWN_KEYS
    if unknown:
        raise UnsupportedKustomization(f"{directory}: unsupported fields {sorted(unknown)}")
    objects: list[Obj] = []
    for entry in spec.get("resources", []):
        target = (directory / entry).resolve()
        if target.is_dir():
            objects += render(target)
        elif target.is_file():
            objects += copy.deepcopy(load_documents(target))
        else:
            raise UnsupportedKustomization(f"{directory}: resource {entry} does not exist")
    objects += [
        _generate_secret(generator, directory) for generator in spec.get("secretGenerator", [])
    ]
    _check_unique(objects, directory)
    for patch in spec.get("patches", []):
        _apply_patch(objects, patch, directory)
    for replica in spec.get("replicas", []):
        _set_replicas(objects, replica, directory)
    for image in spec.get("images", []):
        _set_image(objects, image)
    if "namespace" in spec:
        for obj in objects:
            if obj["kind"] != "Namespace":
                obj.setdefault("metadata", {})["namespace"] = spec["namespace"]
    return objects


def _generate_secret(generator: Obj, directory: Path) -> Obj:
    unknown = set(generator) - {"name", "envs", "options"}
    options = generator.get("options", {})
    if unknown or set(options) - {"disableNameSuffixHash", "labels"}:
        raise UnsupportedKustomization(f"{directory}: unsupported secretGenerator {generator}")
    if options.get("disableNameSuffixHash") is not True:
        raise UnsupportedKustomization(f"{directory}: only secretGenerator without a hash")
    data: dict[str, str] = {}
    for name in generator["envs"]:
        path = directory / name
        if not path.is_file():
            raise UnsupportedKustomization(f"{directory}: secretGenerator file {name} is missing")
        for line in path.read_text().splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                field, _, value = line.partition("=")
                data[field.strip()] = _base64(value)
    metadata: Obj = {"name": generator["name"]}
    if "labels" in options:
        metadata["labels"] = dict(options["labels"])
    return {"apiVersion": "v1", "kind": "Secret", "metadata": metadata, "type": "Opaque",
            "data": data}  # fmt: skip


def _base64(value: str) -> str:
    """kustomize's encoding: lines of 70 characters, each ending in a newline, once the
    text is longer than one line (kyaml ``encodeBase64``)."""
    encoded = base64.b64encode(value.encode()).decode()
    if len(encoded) <= 70:
        return encoded
    return "".join(encoded[i : i + 70] + "\n" for i in range(0, len(encoded), 70))


def secret_values(obj: Obj) -> dict[str, str]:
    """A Secret's values as text, whether written as ``stringData`` or ``data``."""
    values = {k: base64.b64decode(v).decode() for k, v in obj.get("data", {}).items()}
    return {**values, **obj.get("stringData", {})}


def key(obj: Obj) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


def _check_unique(objects: list[Obj], directory: Path) -> None:
    seen: set[tuple[str, str]] = set()
    for obj in objects:
        if key(obj) in seen:
            raise UnsupportedKustomization(f"{directory}: {key(obj)} defined twice")
        seen.add(key(obj))


def _targets(objects: list[Obj], target: Obj) -> list[Obj]:
    unknown = set(target) - {"kind", "name"}
    if unknown:
        raise UnsupportedKustomization(f"unsupported patch target fields {sorted(unknown)}")
    name = re.compile(target.get("name", ".*"))
    return [o for o in objects if o["kind"] == target["kind"] and name.fullmatch(key(o)[1])]


def _apply_patch(objects: list[Obj], patch: Obj, directory: Path) -> None:
    if set(patch) != {"target", "patch"}:
        raise UnsupportedKustomization(f"{directory}: only inline patches with a target")
    operations = yaml.safe_load(patch["patch"])
    if not isinstance(operations, list):
        raise UnsupportedKustomization(f"{directory}: only JSON6902 patches (a list of ops)")
    matched = _targets(objects, patch["target"])
    if not matched:
        raise UnsupportedKustomization(
            f"{directory}: patch target {patch['target']} matches nothing"
        )
    for obj in matched:
        for op in operations:
            _json_patch(obj, op)


def _json_patch(obj: Obj, op: Obj) -> None:
    parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
    parent: Any = obj
    for part in parts[:-1]:
        parent = parent[int(part)] if isinstance(parent, list) else parent[part]
    last = parts[-1]
    kind = op["op"]
    if isinstance(parent, list):
        index = len(parent) if last == "-" else int(last)
        if kind == "add":
            parent.insert(index, op["value"])
        elif kind == "replace":
            parent[index] = op["value"]
        elif kind == "remove":
            del parent[index]
        else:
            raise UnsupportedKustomization(f"unsupported op {kind}")
        return
    if kind in ("replace", "remove") and last not in parent:
        raise UnsupportedKustomization(f"{op['path']}: nothing to {kind}")
    if kind in ("add", "replace"):
        parent[last] = op["value"]
    elif kind == "remove":
        del parent[last]
    else:
        raise UnsupportedKustomization(f"unsupported op {kind}")


def _set_replicas(objects: list[Obj], replica: Obj, directory: Path) -> None:
    matched = [
        o
        for o in objects
        if o["kind"] in ("Deployment", "StatefulSet") and key(o)[1] == replica["name"]
    ]
    if not matched:
        raise UnsupportedKustomization(f"{directory}: replicas for unknown {replica['name']}")
    for obj in matched:
        obj["spec"]["replicas"] = replica["count"]


def pod_spec(obj: Obj) -> Obj | None:
    if obj["kind"] in ("Deployment", "StatefulSet", "Job"):
        spec: Obj = obj["spec"]["template"]["spec"]
        return spec
    return None


def _set_image(objects: list[Obj], image: Obj) -> None:
    unknown = set(image) - {"name", "newName", "newTag", "digest"}
    if unknown:
        raise UnsupportedKustomization(f"unsupported image fields {sorted(unknown)}")
    for obj in objects:
        spec = pod_spec(obj)
        if spec is None:
            continue
        for container in spec.get("containers", []) + spec.get("initContainers", []):
            name, _, digest = container["image"].partition("@")
            name, _, tag = name.partition(":")
            if name != image["name"]:
                continue
            reference = f"{image.get('newName', name)}:{image.get('newTag', tag)}"
            digest = image.get("digest", digest)
            container["image"] = f"{reference}@{digest}" if digest else reference
