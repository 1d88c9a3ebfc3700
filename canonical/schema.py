"""JSON Schema of the canonical contract, and the backward-compatibility check between two versions of it.

:data:`EXPORTED` is every public contract model: each documented :class:`~canonical.models.CanonicalModel`
subclass defined in one of :data:`CONTRACT_MODULES`, found by walking them, so a new model is exported
as soon as it exists. :func:`json_schemas` gives their validation schemas with PHI tagged (``"phi": true``
on each PHI property, ``"x-phi-fields"`` listing them as dotted paths); :func:`write_schemas` writes a
snapshot directory and :func:`breaking_changes` compares two snapshots. The policy is in
docs/schema-compatibility.md.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from canonical.envelope import SCHEMA_VERSION
from canonical.models import CanonicalModel
from canonical.phi import PHI_KEY

# The modules whose models make up the contract; a module an older release lacks is skipped.
CONTRACT_MODULES = (
    "canonical.envelope",
    "canonical.models",
    "canonical.reference",
    "canonical.revenue_cycle",
    "canonical.supply",
    "canonical.ledger",
    "canonical.quarantine",
)
INDEX = "index.json"
PHI_FIELDS_KEY = "x-phi-fields"
VERSION_KEY = "x-schema-version"

Schema = dict[str, Any]


def contract_models(modules: Iterable[str] = CONTRACT_MODULES) -> dict[str, type[BaseModel]]:
    """Return the public contract models of ``modules`` by name, sorted.

    A model is public when it subclasses CanonicalModel, is defined in the module (not imported), has its
    own docstring and a name not starting with ``_``. Two models with the same name are refused: the name
    is the schema's file name.
    """
    found: dict[str, type[BaseModel]] = {}
    for module_name in modules:
        if importlib.util.find_spec(module_name) is None:
            continue
        module = importlib.import_module(module_name)
        for name, obj in vars(module).items():
            if not (isinstance(obj, type) and issubclass(obj, CanonicalModel)) or obj is CanonicalModel:
                continue
            if obj.__module__ != module_name or name != obj.__name__ or name.startswith("_"):
                continue
            if not obj.__dict__.get("__doc__"):
                continue
            if name in found and found[name] is not obj:
                raise RuntimeError(
                    f"two contract models are named {name}: {found[name].__module__}, {module_name}"
                )
            found[name] = obj
    return dict(sorted(found.items()))


EXPORTED: dict[str, type[BaseModel]] = contract_models()


# --------------------------------------------------------------------------------------------------
# Generation


def _pointer(root: Schema, ref: str) -> Schema:
    if not ref.startswith("#"):
        raise ValueError(f"only local $refs are supported, got {ref!r}")
    node: Any = root
    for part in ref[1:].split("/")[1:]:
        node = node[part.replace("~1", "/").replace("~0", "~")]
    if not isinstance(node, dict):
        raise ValueError(f"$ref {ref!r} does not point at a schema")
    return node


def _resolve(root: Schema, node: Schema) -> tuple[Schema, str | None]:
    """Follow ``$ref`` (and single-member ``allOf``) to the schema, keeping sibling keywords.

    Returns the schema and the last reference followed (None when the node was inline).
    """
    ref = None
    for _ in range(64):
        if "$ref" in node:
            ref = str(node["$ref"])
            siblings = {key: value for key, value in node.items() if key != "$ref"}
            node = {**_pointer(root, ref), **siblings}
        elif isinstance(node.get("allOf"), list) and len(node["allOf"]) == 1:
            siblings = {key: value for key, value in node.items() if key != "allOf"}
            node = {**node["allOf"][0], **siblings}
        else:
            return node, ref
    raise ValueError(f"$ref chain too long at {ref!r}")


def _subschemas(node: Schema) -> list[Schema]:
    """Schemas that describe the same value (union members) or its elements (items, map values)."""
    out: list[Schema] = []
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        out.extend(sub for sub in node.get(key, []) if isinstance(sub, dict))
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            out.append(node[key])
    return out


def phi_paths(schema: Schema) -> list[str]:
    """Return the sorted dotted paths of the PHI-tagged properties of ``schema``, nested ones included.

    Arrays and unions are looked through: ``payload.patient.mrn`` is the MRN of whichever payload has a
    patient, ``surviving.address.city`` a part of a nested model's property.
    """
    found: set[str] = set()

    def walk(node: Schema, prefix: str, refs: frozenset[str]) -> None:
        node, ref = _resolve(schema, node)
        if ref is not None:
            if ref in refs:
                return
            refs = refs | {ref}
        for sub in _subschemas(node):
            walk(sub, prefix, refs)
        for name, prop in node.get("properties", {}).items():
            path = f"{prefix}.{name}" if prefix else name
            if isinstance(prop, dict):
                if prop.get(PHI_KEY) is True:
                    found.add(path)
                walk(prop, path, refs)

    walk(schema, "", frozenset())
    return sorted(found)


def model_schema(model: type[BaseModel]) -> Schema:
    """Return the validation JSON Schema of one model, with its PHI paths and the schema version."""
    schema = model.model_json_schema(mode="validation")
    schema[PHI_FIELDS_KEY] = phi_paths(schema)
    schema[VERSION_KEY] = SCHEMA_VERSION
    return schema


def json_schemas() -> dict[str, Schema]:
    """Return the schema of every exported model, by model name."""
    return {name: model_schema(model) for name, model in EXPORTED.items()}


def _dump(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def index(schemas: dict[str, Schema]) -> dict[str, Any]:
    """Return the index of a snapshot: the version and each model's file and PHI fields."""
    return {
        "schema_version": SCHEMA_VERSION,
        "models": {
            name: {"file": f"{name}.json", "phi_fields": schema.get(PHI_FIELDS_KEY, [])}
            for name, schema in schemas.items()
        },
    }


def render(schemas: dict[str, Schema] | None = None) -> dict[str, str]:
    """Return the files of a snapshot (name to text): one per model plus the index."""
    schemas = json_schemas() if schemas is None else schemas
    files = {f"{name}.json": _dump(schema) for name, schema in schemas.items()}
    files[INDEX] = _dump(index(schemas))
    return files


def write_schemas(out_dir: Path) -> list[Path]:
    """Write a snapshot of the current schemas into ``out_dir``; return the files written.

    Files of models the directory's previous index listed but that no longer exist are removed; no other
    file is touched.
    """
    files = render()
    out_dir.mkdir(parents=True, exist_ok=True)
    previous = out_dir / INDEX
    if previous.is_file():
        try:
            listed = json.loads(previous.read_text(encoding="utf-8")).get("models", {})
        except (ValueError, AttributeError):
            listed = {}
        for name in listed:
            stale = out_dir / f"{name}.json"
            if stale.name not in files and stale.is_file():
                stale.unlink()
    written = []
    for name, text in files.items():
        path = out_dir / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def load_schemas(directory: Path) -> dict[str, Schema]:
    """Read a snapshot written by :func:`write_schemas`: model name to schema (the index is left out)."""
    if not directory.is_dir():
        raise FileNotFoundError(f"no schema snapshot at {directory}")
    out: dict[str, Schema] = {}
    for path in sorted(directory.glob("*.json")):
        if path.name == INDEX:
            continue
        value = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(value, dict):
            raise ValueError(f"{path}: not a JSON Schema object")
        out[path.stem] = value
    return out


def snapshot_version(directory: Path) -> str | None:
    """Return the schema version a snapshot's index names, or None when it has no index."""
    path = directory / INDEX
    if not path.is_file():
        return None
    value = json.loads(path.read_text(encoding="utf-8"))
    version = value.get("schema_version") if isinstance(value, dict) else None
    return str(version) if version is not None else None


def drift(directory: Path) -> list[str]:
    """Return how the snapshot in ``directory`` differs from what :func:`write_schemas` would write now."""
    if not directory.is_dir():
        return [f"{directory} does not exist"]
    expected = render()
    actual = {path.name: path.read_text(encoding="utf-8") for path in directory.glob("*.json")}
    out = []
    for name in sorted(expected.keys() | actual.keys()):
        if name not in actual:
            out.append(f"{name} is missing")
        elif name not in expected:
            out.append(f"{name} is not a current model (stale)")
        elif actual[name] != expected[name]:
            out.append(f"{name} differs")
    return out


# --------------------------------------------------------------------------------------------------
# Compatibility

_JSON_TYPES: tuple[tuple[type, str], ...] = (
    (bool, "boolean"),
    (int, "integer"),
    (float, "number"),
    (str, "string"),
    (type(None), "null"),
    (list, "array"),
    (dict, "object"),
)
# Bounds: (inclusive keyword, exclusive keyword, lower?)
_BOUNDS = (("minimum", "exclusiveMinimum", True), ("maximum", "exclusiveMaximum", False))
_AT_LEAST = ("minLength", "minItems", "minProperties")  # raising one is a tightening
_AT_MOST = ("maxLength", "maxItems", "maxProperties")  # lowering one is a tightening
_EXACT = ("pattern", "format")  # adding or changing one is a tightening (equivalence is not decided)


def _json_type(value: Any) -> str:
    for python_type, name in _JSON_TYPES:
        if isinstance(value, python_type):
            return name
    return "unknown"


def _kinds(node: Schema) -> frozenset[str] | None:
    """The JSON types a (non-union) schema accepts; None when it does not restrict the type."""
    declared = node.get("type")
    if isinstance(declared, str):
        return frozenset({declared})
    if isinstance(declared, list):
        return frozenset(str(kind) for kind in declared)
    if "const" in node:
        return frozenset({_json_type(node["const"])})
    if isinstance(node.get("enum"), list):
        return frozenset(_json_type(value) for value in node["enum"])
    if "properties" in node:
        return frozenset({"object"})
    if "items" in node or "prefixItems" in node:
        return frozenset({"array"})
    return None


def _covers(new: frozenset[str] | None, old: frozenset[str] | None) -> bool:
    """True when every type ``old`` accepts is accepted by ``new`` (an integer is a number)."""
    if new is None:
        return True
    if old is None:
        return False
    return all(kind in new or (kind == "integer" and "number" in new) for kind in old)


def _values(node: Schema) -> list[Any] | None:
    if "const" in node:
        return [node["const"]]
    if isinstance(node.get("enum"), list):
        return list(node["enum"])
    return None


def _describe(node: Schema) -> str:
    if "title" in node and _kinds(node) == frozenset({"object"}):
        return str(node["title"])
    kinds = _kinds(node)
    return "any" if kinds is None else "|".join(sorted(kinds))


def _bound(node: Schema, inclusive: str, exclusive: str, lower: bool) -> tuple[float, bool] | None:
    """The tightest bound of ``node`` as (value, exclusive), or None."""
    found: list[tuple[float, bool]] = []
    if isinstance(node.get(inclusive), int | float):
        found.append((node[inclusive], False))
    if isinstance(node.get(exclusive), int | float) and not isinstance(node.get(exclusive), bool):
        found.append((node[exclusive], True))
    if not found:
        return None
    if lower:
        return max(found, key=lambda bound: (bound[0], bound[1]))
    return min(found, key=lambda bound: (bound[0], not bound[1]))


def _tighter(new: tuple[float, bool] | None, old: tuple[float, bool] | None, lower: bool) -> bool:
    if new is None:
        return False
    if old is None:
        return True
    if new[0] != old[0]:
        return new[0] > old[0] if lower else new[0] < old[0]
    return new[1] and not old[1]


def _show_bound(bound: tuple[float, bool] | None, lower: bool) -> str:
    if bound is None:
        return "none"
    sign = (">" if lower else "<") + ("" if bound[1] else "=")
    return f"{sign} {bound[0]:g}"


class _Comparison:
    """Compares one model's old schema with its new one, collecting what the new one would refuse."""

    def __init__(self, model: str, old_root: Schema, new_root: Schema) -> None:
        self.model = model
        self.old_root = old_root
        self.new_root = new_root
        self.seen: set[tuple[str, str]] = set()
        self.problems: list[str] = []

    def report(self, path: str, what: str) -> None:
        self.problems.append(f"{path}: {what}")

    def run(self) -> list[str]:
        self.node(self.old_root, self.new_root, self.model)
        return self.problems

    def _variants(self, root: Schema, node: Schema) -> list[Schema]:
        node, _ = _resolve(root, node)
        members = [sub for key in ("anyOf", "oneOf") for sub in node.get(key, []) if isinstance(sub, dict)]
        if not members:
            return [node]
        out: list[Schema] = []
        for member in members:
            out.extend(self._variants(root, member))
        return out

    def node(self, old: Schema, new: Schema, path: str) -> None:
        old, old_ref = _resolve(self.old_root, old)
        new, new_ref = _resolve(self.new_root, new)
        if old_ref is not None and new_ref is not None:
            if (old_ref, new_ref) in self.seen:
                return
            self.seen.add((old_ref, new_ref))
        old_variants = self._variants(self.old_root, old)
        new_variants = self._variants(self.new_root, new)
        if len(old_variants) == 1 and len(new_variants) == 1:
            self.single(old_variants[0], new_variants[0], path)
            return
        if any(_kinds(variant) is None and _values(variant) is None for variant in new_variants):
            return  # one member accepts anything
        for variant in old_variants:
            self._variant(variant, new_variants, path)

    def _variant(self, old: Schema, candidates: list[Schema], path: str) -> None:
        """Check one member of an old union: it is fine when some member of the new union accepts it.

        Otherwise the problems are those against the member that is evidently its successor (the same
        model, the same tag of a tagged union, else the closest one); a tagged member whose tag is gone
        is reported as no longer accepted.
        """
        label = f"{path}<{old['title']}>" if "title" in old and "properties" in old else path
        fitting = [new for new in candidates if _covers(_kinds(new), _kinds(old))]
        trials: list[tuple[Schema, list[str]]] = []
        for new in fitting:
            trial = _Comparison(self.model, self.old_root, self.new_root)
            trial.seen = set(self.seen)
            trial.single(old, new, label)
            if not trial.problems:
                return
            trials.append((new, trial.problems))
        chosen = self._successor(old, trials)
        if chosen is None:
            offered = ", ".join(_describe(new) for new in candidates)
            self.report(path, f"no longer accepts {_describe(old)} (accepts {offered})")
        else:
            self.problems.extend(chosen)

    @staticmethod
    def _successor(old: Schema, trials: list[tuple[Schema, list[str]]]) -> list[str] | None:
        if not trials:
            return None
        if "properties" in old:
            for new, problems in trials:  # the same model
                if "title" in old and new.get("title") == old["title"]:
                    return problems
            tags = {name: prop["const"] for name, prop in old["properties"].items() if "const" in prop}
            if tags:  # a tagged union member: its successor has the same tag, or there is none
                for new, problems in trials:
                    new_props = new.get("properties", {})
                    if all(new_props.get(name, {}).get("const") == value for name, value in tags.items()):
                        return problems
                return None
        return min(trials, key=lambda trial: len(trial[1]))[1]

    def single(self, old: Schema, new: Schema, path: str) -> None:
        old_kinds, new_kinds = _kinds(old), _kinds(new)
        if not _covers(new_kinds, old_kinds):
            shown_old = "any" if old_kinds is None else "|".join(sorted(old_kinds))
            shown_new = "|".join(sorted(new_kinds or ()))
            self.report(path, f"type changed from {shown_old} to {shown_new}")
            return
        old_values, new_values = _values(old), _values(new)
        if new_values is not None:
            if old_values is None:
                self.report(path, f"now restricted to the values {new_values}")
            else:
                removed = [value for value in old_values if value not in new_values]
                if removed:
                    self.report(path, f"enum value(s) removed: {removed}")
        self.constraints(old, new, path)
        if "properties" in old or "properties" in new or "additionalProperties" in new:
            self.object(old, new, path)
        if isinstance(new.get("items"), dict):
            self.node(old["items"] if isinstance(old.get("items"), dict) else {}, new["items"], f"{path}[]")
        for position, (old_item, new_item) in enumerate(
            zip(old.get("prefixItems", []), new.get("prefixItems", []), strict=False)
        ):
            self.node(old_item, new_item, f"{path}[{position}]")

    def constraints(self, old: Schema, new: Schema, path: str) -> None:
        for inclusive, exclusive, lower in _BOUNDS:
            old_bound = _bound(old, inclusive, exclusive, lower)
            new_bound = _bound(new, inclusive, exclusive, lower)
            if _tighter(new_bound, old_bound, lower):
                which = "lower" if lower else "upper"
                self.report(
                    path,
                    f"{which} bound tightened from {_show_bound(old_bound, lower)} "
                    f"to {_show_bound(new_bound, lower)}",
                )
        for keyword in _AT_LEAST:
            if keyword in new and new[keyword] > old.get(keyword, 0):
                self.report(path, f"{keyword} raised from {old.get(keyword, 0)} to {new[keyword]}")
        for keyword in _AT_MOST:
            if keyword in new and (keyword not in old or new[keyword] < old[keyword]):
                self.report(path, f"{keyword} lowered from {old.get(keyword, 'none')} to {new[keyword]}")
        for keyword in _EXACT:
            if keyword in new and new[keyword] != old.get(keyword):
                self.report(path, f"{keyword} changed from {old.get(keyword, 'none')!r} to {new[keyword]!r}")
        if "multipleOf" in new and ("multipleOf" not in old or old["multipleOf"] % new["multipleOf"] != 0):
            self.report(
                path, f"multipleOf changed from {old.get('multipleOf', 'none')} to {new['multipleOf']}"
            )
        if new.get("uniqueItems") is True and old.get("uniqueItems") is not True:
            self.report(path, "items must now be unique")

    def object(self, old: Schema, new: Schema, path: str) -> None:
        old_props: dict[str, Schema] = old.get("properties", {})
        new_props: dict[str, Schema] = new.get("properties", {})
        new_extra = new.get("additionalProperties", True)
        old_extra = old.get("additionalProperties", True)
        for name, old_prop in old_props.items():
            where = f"{path}.{name}"
            if name in new_props:
                if old_prop.get(PHI_KEY) is True and new_props[name].get(PHI_KEY) is not True:
                    self.report(where, "PHI tag removed (the field would lose its protection)")
                self.node(old_prop, new_props[name], where)
            elif new_extra is False:
                self.report(where, "property removed (unknown fields are refused, so documents with it fail)")
            elif isinstance(new_extra, dict):
                self.node(old_prop, new_extra, where)
        old_required = set(old.get("required", []))
        for name in sorted(set(new.get("required", [])) - old_required):
            if name in old_props:
                self.report(f"{path}.{name}", "property is now required")
            else:
                self.report(f"{path}.{name}", "new required property (documents without it fail)")
        if new_extra is False and old_extra is not False:
            self.report(path, "unknown properties are now refused")
        elif isinstance(new_extra, dict) and old_extra is not False:
            self.node(old_extra if isinstance(old_extra, dict) else {}, new_extra, f"{path}{{}}")


def breaking_changes(old: dict[str, Schema], new: dict[str, Schema]) -> list[str]:
    """Return why a reader built from ``new`` could refuse a document valid under ``old``; [] if it cannot.

    Reported, one human-readable line each: a removed model; a removed property (the models forbid unknown
    fields); a property newly required, or a new required one; a changed type (including a union member
    dropped, e.g. no longer nullable); a removed enum value or changed const, or a newly restricted value
    set; a tightened constraint (minimum/maximum and their exclusive forms, min/max length, items and
    properties, pattern, format, multipleOf, uniqueItems); unknown properties newly refused; and a PHI tag
    removed, which weakens protection rather than reading. ``$ref`` s are resolved within each schema.
    """
    problems: list[str] = []
    for name in sorted(old):
        if name not in new:
            problems.append(f"{name}: model removed")
            continue
        problems.extend(_Comparison(name, old[name], new[name]).run())
    return problems


__all__ = [
    "CONTRACT_MODULES",
    "EXPORTED",
    "breaking_changes",
    "contract_models",
    "drift",
    "json_schemas",
    "load_schemas",
    "model_schema",
    "phi_paths",
    "render",
    "snapshot_version",
    "write_schemas",
]
