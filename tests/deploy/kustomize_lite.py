"""Renders a kustomization as `kubectl kustomize` does, for the part of kustomize that
deploy/kubernetes uses: `resources` (files and kustomization folders), `patches`
(strategic-merge patches, each aimed at the object of its own kind and name or at a
`target` of kind and equality label selector) and `images` (newName/newTag). Anything
else in a kustomization, or a patch list whose merge behaviour is not modelled here,
is an error: the rendering is either kustomize's or refused, never silently another.

Used by manifests_test.py (Debian 12 has no kustomize); operators use
`kubectl apply -k`.

  python3 kustomize_lite.py DIR     # prints the rendered objects as YAML documents
"""
import copy
import sys
from pathlib import Path

import yaml

KUSTOMIZATION_KEYS = {"apiVersion", "kind", "resources", "images", "patches"}
PATCH_KEYS = {"path", "target"}
TARGET_KEYS = {"kind", "name", "labelSelector"}
IMAGE_KEYS = {"name", "newName", "newTag"}

# Strategic merge: the lists of the Kubernetes API that merge item by item, by this key
# (their patchMergeKey), and those that a patch replaces whole (atomic or without a
# patch strategy). A patch with any other list is refused.
MERGE_KEYS = {"containers": "name", "initContainers": "name", "env": "name", "volumes": "name",
              "volumeMounts": "mountPath"}
REPLACED_LISTS = {"tolerations", "accessModes", "command", "args"}


class KustomizeError(Exception):
    pass


def load_documents(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def strategic_merge(base, patch, where):
    """Merges `patch` into `base` (dicts) in place, as a strategic-merge patch does."""
    for key, value in patch.items():
        here = f"{where}.{key}"
        if value is None:
            base.pop(key, None)
        elif isinstance(value, dict):
            if not isinstance(base.get(key), dict):
                base[key] = {}
            strategic_merge(base[key], value, here)
        elif isinstance(value, list):
            if key in MERGE_KEYS:
                merge_key = MERGE_KEYS[key]
                items = base.setdefault(key, [])
                for item in value:
                    if not isinstance(item, dict) or merge_key not in item:
                        raise KustomizeError(f"{here}: every item needs its {merge_key}")
                    same = [i for i in items if i.get(merge_key) == item[merge_key]]
                    if same:
                        strategic_merge(same[0], item, f"{here}[{item[merge_key]}]")
                    else:
                        items.append(copy.deepcopy(item))
            elif key in REPLACED_LISTS:
                base[key] = copy.deepcopy(value)
            else:
                raise KustomizeError(f"{here}: a list whose strategic merge is not modelled here")
        else:
            base[key] = value


def parse_selector(text):
    labels = {}
    for term in text.split(","):
        name, sep, value = term.partition("=")
        if not sep or value.startswith("=") or "!" in name:
            raise KustomizeError(f"labelSelector {text!r}: only name=value terms are modelled here")
        labels[name.strip()] = value.strip()
    return labels


def matches(obj, target):
    meta = obj.get("metadata", {})
    if "kind" in target and obj.get("kind") != target["kind"]:
        return False
    if "name" in target and meta.get("name") != target["name"]:
        return False
    labels = meta.get("labels") or {}
    return all(labels.get(k) == v for k, v in parse_selector(target.get("labelSelector", "")).items()) \
        if target.get("labelSelector") else True


def set_images(objects, images):
    for image in images:
        if set(image) - IMAGE_KEYS or "name" not in image:
            raise KustomizeError(f"images: {image}: only name, newName, newTag are modelled here")
        for obj in objects:
            pod = obj.get("spec", {}).get("template", {}).get("spec", {})
            for container in pod.get("containers", []) + pod.get("initContainers", []):
                name, _, tag = container.get("image", "").partition(":")
                if name == image["name"]:
                    name = image.get("newName", name)
                    tag = image.get("newTag", tag)
                    container["image"] = f"{name}:{tag}" if tag else name


def render(directory):
    """The objects of the kustomization in `directory`, in the order of its resources."""
    directory = Path(directory)
    kustomization_file = directory / "kustomization.yaml"
    kustomization = yaml.safe_load(kustomization_file.read_text(encoding="utf-8"))
    unknown = set(kustomization) - KUSTOMIZATION_KEYS
    if unknown:
        raise KustomizeError(f"{kustomization_file}: {sorted(unknown)} not modelled here")
    objects = []
    for resource in kustomization.get("resources", []):
        path = directory / resource
        objects += render(path) if path.is_dir() else load_documents(path)
    for patch in kustomization.get("patches", []):
        if set(patch) - PATCH_KEYS or "path" not in patch:
            raise KustomizeError(f"{kustomization_file}: patch {patch}: only path and target are modelled here")
        documents = load_documents(directory / patch["path"])
        if len(documents) != 1:
            raise KustomizeError(f"{patch['path']}: one patch document expected, found {len(documents)}")
        body = copy.deepcopy(documents[0])
        target = patch.get("target")
        if target is None:
            target = {"kind": body["kind"], "name": body["metadata"]["name"]}
        elif set(target) - TARGET_KEYS:
            raise KustomizeError(f"{patch['path']}: target {target}: only kind, name, labelSelector are modelled")
        else:
            body.get("metadata", {}).pop("name", None)  # a targeted patch applies to every match
        chosen = [o for o in objects if matches(o, target)]
        if not chosen:
            raise KustomizeError(f"{patch['path']}: no object matches {target}")
        for obj in chosen:
            strategic_merge(obj, body, f"{patch['path']}")
    set_images(objects, kustomization.get("images", []))
    seen = set()
    for obj in objects:
        kind_name = f"{obj['kind']}/{obj['metadata']['name']}"
        if kind_name in seen:
            raise KustomizeError(f"{directory}: {kind_name} defined twice")
        seen.add(kind_name)
    return objects


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: kustomize_lite.py DIR")
    yaml.safe_dump_all(render(sys.argv[1]), sys.stdout, sort_keys=False)
