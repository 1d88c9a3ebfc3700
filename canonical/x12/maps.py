"""pyx12's maps for hcsync: the "nearest maps" directory, and maps parsed once per process.

pyx12 4.0.0 picks a map by ISA12, GS01 and GS08 in its ``maps.xml``, and registers no map for
005010X222A2 (837P) or 005010X223A3 (837I), the guide versions most senders use today; a group it has no
map for stops its walk with an ``EngineError``. The A2/A3 errata changed code lists and notes, not the
loop and segment structure, so hcsync validates them with the nearest map pyx12 has (X222A1, and the
X223 map pyx12 serves X223A2 with), and says so in every result. The directory that routes them is built
here at run time from the installed pyx12's own XML (nothing of pyx12 is copied into the repository),
with the 835 fix the research found: pyx12 treats each PLB as the start of the FOOTER wrapper loop,
whose repeat is 1, so a second PLB is a false "Loop FOOTER exceeded max count".

Every patch is a text replacement that must match exactly as often as expected; when an upgrade of
pyx12 changes its maps, building the directory raises :class:`ConfigurationError` instead of validating
with maps that quietly lost the patch.

``pyx12.map_if.load_map_file`` re-parses the XML on every call (0.3 to 1.4 s per file on the development
machine). Maps are read-only once built (the walk keeps its counts in its own walker), so they are parsed
once per process here, behind a lock.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyx12
import pyx12.map_if
import pyx12.map_index
import pyx12.params

from canonical.errors import ConfigurationError

__all__ = [
    "MAP_PATCHES_VERSION",
    "NEAREST",
    "MapChoice",
    "choose_map",
    "control_map_file",
    "forget_maps",
    "load_map",
    "map_index",
    "nearest_maps",
]

# Bump when the patches below change: the cache directory's name carries it, so a new build is made.
MAP_PATCHES_VERSION = "1"
_CONTROL_5010 = "x12.control.00501.xml"
_MAPS_INDEX = "maps.xml"
_INTERCHANGE_5010 = "00501"

# Guide without a pyx12 map -> the guide whose map validates it.
NEAREST: dict[str, str] = {"005010X222A2": "005010X222A1", "005010X223A3": "005010X223A2"}
# The map file each nearest guide is served with, its functional identifier code (GS01), and how many code
# lists of that file name the nearest guide (GS08 in both; ST03 too in the X223 map, X222's lists none).
_NEAREST_FILES: dict[str, tuple[str, str, str, int]] = {
    "005010X222A2": ("HC", "837P", "837.5010.X222.A1.xml", 1),
    "005010X223A3": ("HC", "837Q3", "837Q3.I.5010.X223.A1.xml", 2),
}
_FOOTER_REPEAT = re.compile(
    r'(<loop xid="FOOTER" type="wrapper">(?:(?!</?loop).)*?<repeat>)1(</repeat>)', re.S
)


@dataclass(frozen=True, slots=True)
class MapChoice:
    """The pyx12 map a functional group is validated with, and how to say so in a result."""

    map_file: str
    label: str  # "X222A1 map (nearest to X222A2)"


def _short(guide: str) -> str:
    """005010X222A1 -> X222A1 (the guide's name without the version prefix)."""
    return guide[6:] if guide.startswith("005010") else guide


def _replace(text: str, old: str, new: str, expected: int, where: str) -> str:
    found = text.count(old)
    if found != expected:
        raise ConfigurationError(
            f"pyx12 {pyx12.__version__}: {where} holds {old!r} {found} times, hcsync's nearest-map patch "
            f"expects {expected}; the installed pyx12 maps changed, review canonical/x12/maps.py"
        )
    return text.replace(old, new)


def _patch(folder: Path) -> None:
    """Apply hcsync's routes and fixes to a copy of pyx12's map folder."""
    index = folder / _MAPS_INDEX
    anchor = '    <map vriic="005010X222A1" fic="HC" abbr="837P">'
    routes = "".join(
        f'    <map vriic="{guide}" fic="{fic}" abbr="{abbr}">{name}</map>\n'
        for guide, (fic, abbr, name, _lists) in _NEAREST_FILES.items()
    )
    index.write_text(_replace(index.read_text("utf-8"), anchor, routes + anchor, 1, _MAPS_INDEX), "utf-8")
    # GS08 is validated against the control map's code list and ST03/GS08 against each transaction map's.
    control = folder / _CONTROL_5010
    listed = "            <code>005010X223A2</code>\n"
    extra = "".join(f"            <code>{guide}</code>\n" for guide in NEAREST)
    control.write_text(
        _replace(control.read_text("utf-8"), listed, listed + extra, 1, _CONTROL_5010), "utf-8"
    )
    for guide, (_fic, _abbr, name, lists) in _NEAREST_FILES.items():
        path = folder / name
        code = f"<code>{NEAREST[guide]}</code>"
        path.write_text(
            _replace(path.read_text("utf-8"), code, code + f"<code>{guide}</code>", lists, name), "utf-8"
        )
    remit = folder / "835.5010.X221.A1.xml"
    text, count = _FOOTER_REPEAT.subn(r"\g<1>&gt;1\g<2>", remit.read_text("utf-8"), count=1)
    if count != 1:
        raise ConfigurationError(
            f"pyx12 {pyx12.__version__}: 835.5010.X221.A1.xml has no FOOTER loop repeating once; "
            "the installed pyx12 maps changed, review canonical/x12/maps.py"
        )
    remit.write_text(text, "utf-8")


def _source_folder() -> Path:
    return Path(pyx12.__file__).parent / "map"


def _digest(source: Path) -> str:
    """A digest of pyx12's maps.xml and version: a new pyx12 gets a new cache directory."""
    digest = hashlib.sha256(f"{pyx12.__version__}|{MAP_PATCHES_VERSION}|".encode())
    digest.update((source / _MAPS_INDEX).read_bytes())
    return digest.hexdigest()[:16]


_BUILD_LOCK = threading.Lock()
_BUILT: dict[Path, Path] = {}


def nearest_maps(cache_root: Path | None = None) -> Path:
    """Return the nearest-maps directory under ``cache_root`` (default: the system temp directory).

    Built once from the installed pyx12 maps into a temporary sibling and renamed into place, so several
    processes building it at once each see a whole directory. Raises ConfigurationError when pyx12's
    maps no longer take hcsync's patches, or the directory cannot be written.
    """
    root = cache_root if cache_root is not None else Path(tempfile.gettempdir()) / "hcsync-x12-maps"
    with _BUILD_LOCK:
        known = _BUILT.get(root)
        if known is not None:
            return known
        source = _source_folder()
        target = root / f"pyx12-{pyx12.__version__}-{_digest(source)}"
        try:
            _build(source, root, target)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot build the pyx12 nearest-maps directory under {root}: {exc}"
            ) from exc
        _BUILT[root] = target
        return target


def _build(source: Path, root: Path, target: Path) -> None:
    """Copy and patch pyx12's maps into ``target`` unless a build is already there."""
    if (target / _MAPS_INDEX).is_file():
        return
    root.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=".building-", dir=root))
    try:
        folder = building / "map"
        shutil.copytree(source, folder, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
        _patch(folder)
        try:
            os.rename(folder, target)
        except OSError:
            if not (target / _MAPS_INDEX).is_file():  # not another process's finished build
                raise
    finally:
        shutil.rmtree(building, ignore_errors=True)


_PARAMS = pyx12.params.ParamsBase()  # not ParamsUnix: it would read the user's ~/.pyx12.conf.xml
_MAP_LOCK = threading.Lock()
_MAPS: dict[tuple[str, str], Any] = {}
_INDEXES: dict[str, Any] = {}


def load_map(map_file: str, map_path: Path) -> Any:
    """Return pyx12's map ``map_file`` from ``map_path``, parsed once per process (thread-safe)."""
    key = (map_file, str(map_path))
    with _MAP_LOCK:
        found = _MAPS.get(key)
        if found is None:
            found = pyx12.map_if.load_map_file(map_file, _PARAMS, str(map_path))
            _MAPS[key] = found
        return found


def forget_maps() -> None:
    """Drop the parsed maps (the next validation parses them again): for measurements and tests."""
    with _MAP_LOCK:
        _MAPS.clear()
        _INDEXES.clear()


def map_index(map_path: Path) -> Any:
    """Return pyx12's index of ``map_path``'s maps.xml, read once per process."""
    with _MAP_LOCK:
        found = _INDEXES.get(str(map_path))
        if found is None:
            found = pyx12.map_index.map_index(str(map_path))
            _INDEXES[str(map_path)] = found
        return found


def choose_map(interchange_version: str, functional_id: str, guide: str, map_path: Path) -> MapChoice | None:
    """Return the map a group is validated with, or None when pyx12 has none (nearest maps included)."""
    if interchange_version != _INTERCHANGE_5010 or not guide.startswith("005010"):
        return None
    name = map_index(map_path).get_filename(interchange_version, guide, functional_id)
    if name is None:
        return None
    nearest = NEAREST.get(guide)
    if nearest is not None:
        return MapChoice(name, f"{_short(nearest)} map (nearest to {_short(guide)})")
    if name == "835.5010.X221.A1.xml":
        return MapChoice(name, f"{_short(guide)} map (second PLB fix)")
    return MapChoice(name, f"{_short(guide)} map")


def control_map_file() -> str:
    """The control map (ISA, GS, GE, IEA) of 005010 interchanges."""
    return _CONTROL_5010
