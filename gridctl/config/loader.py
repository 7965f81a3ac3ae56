"""Load a site folder (site.yaml + maps/) into a validated `Site`, or report every problem."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from gridctl.config.models import DeviceMap, Site
from gridctl.config.yamlsource import PathKey, YamlDocument, YamlSyntaxError, format_path, load_yaml

SITE_FILE = "site.yaml"
MAPS_DIR = "maps"


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong in a site description, located as precisely as the file allows."""

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.path}: {self.message}"


class SiteError(Exception):
    """A site description that cannot be used; `problems` says everything that is wrong."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass(frozen=True)
class Origin:
    """Where a value came from: its document and its path inside that document."""

    document: YamlDocument
    path: PathKey


class ProblemSink:
    """Collects problems, turning document paths into file, line and field path."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, origin: Origin, message: str, *, suffix: PathKey = ()) -> None:
        path = (*origin.path, *suffix)
        self.problems.append(
            Problem(str(origin.document.file), origin.document.line_of(path), format_path(path), message)
        )

    def add_plain(self, file: Path, line: int | None, path: str, message: str) -> None:
        self.problems.append(Problem(str(file), line, path, message))

    def sorted(self) -> list[Problem]:
        unique = dict.fromkeys(self.problems)
        return sorted(unique, key=lambda p: (p.file, p.line or 0, p.path, p.message))


_MAP_ADAPTER: TypeAdapter[Any] = TypeAdapter(DeviceMap)


def site_file(path: str | Path) -> Path:
    """Accept a site folder or its site.yaml."""
    path = Path(path)
    return path / SITE_FILE if path.is_dir() else path


def _schema_problems(error: ValidationError, document: YamlDocument, base: PathKey, data: Any,
                     sink: ProblemSink, remap: dict[PathKey, Origin] | None = None) -> None:
    for detail in error.errors(include_url=False):
        path = data_path(data, detail["loc"])
        message = detail["msg"]
        if detail["type"] == "extra_forbidden":
            message = "unknown field"
        elif detail["type"] == "missing":
            message = "required field is missing"
        elif detail["type"] == "union_tag_invalid":
            context = detail.get("ctx", {})
            field = str(context.get("discriminator", "")).strip("'")
            path = (*path, field)
            message = f"unknown {field} {context.get('tag')!r}; expected one of {context.get('expected_tags')}"
        origin = Origin(document, (*base, *path))
        if remap:
            # A point merged from a device map is reported in the map file.
            for prefix, mapped in remap.items():
                if path[: len(prefix)] == prefix:
                    origin = Origin(mapped.document, (*mapped.path, *path[len(prefix):]))
                    break
        sink.add(origin, message)


def data_path(data: Any, loc: tuple[Any, ...]) -> PathKey:
    """Follow pydantic's error location through the data, dropping union tags it inserts."""
    path: list[str | int] = []
    cursor = data
    for part in loc:
        if isinstance(cursor, dict) and part in cursor:
            cursor = cursor[part]
            path.append(part)
        elif isinstance(cursor, list) and isinstance(part, int) and 0 <= part < len(cursor):
            cursor = cursor[part]
            path.append(part)
        elif isinstance(cursor, dict) and isinstance(part, str) and not path_is_tag(part, cursor):
            # A missing or unknown key: name it, there is nothing below it.
            path.append(part)
            cursor = None
        # Otherwise a union tag (e.g. "modbus", "battery"): not part of the document.
    return tuple(path)


def path_is_tag(part: str, mapping: dict[str, Any]) -> bool:
    return part in {mapping.get("protocol"), mapping.get("type")} or part.startswith("function-")


def _load_map(site_dir: Path, name: str, cache: dict[str, tuple[YamlDocument, Any] | None],
              sink: ProblemSink) -> tuple[YamlDocument, Any] | None:
    if name in cache:
        return cache[name]
    file = site_dir / MAPS_DIR / f"{name}.yaml"
    result: tuple[YamlDocument, Any] | None = None
    if file.is_file():
        try:
            document = load_yaml(file)
        except YamlSyntaxError as error:
            sink.add_plain(error.file, error.line, "(document)", error.message)
        else:
            for path, line in document.duplicate_keys:
                sink.add_plain(file, line, format_path(path), "duplicate key")
            try:
                parsed = _MAP_ADAPTER.validate_python(document.data)
            except ValidationError as error:
                _schema_problems(error, document, (), document.data, sink)
            else:
                result = (document, parsed)
    cache[name] = result
    return result


def read_site(path: str | Path) -> tuple[Site | None, list[Problem]]:
    """Parse and validate a site; returns the site (None if unusable) and every problem found."""
    from gridctl.config.checks import check_site_semantics

    file = site_file(path)
    sink = ProblemSink()
    if not file.is_file():
        sink.add_plain(file, None, "(document)", "no such site file")
        return None, sink.sorted()
    try:
        document = load_yaml(file)
    except YamlSyntaxError as error:
        sink.add_plain(error.file, error.line, "(document)", error.message)
        return None, sink.sorted()
    for dup_path, line in document.duplicate_keys:
        sink.add_plain(file, line, format_path(dup_path), "duplicate key")
    data = document.data
    if not isinstance(data, dict):
        sink.add_plain(file, 1, "(document)", "a site file must be a mapping of fields")
        return None, sink.sorted()

    # Merge each device's map points ahead of its inline points, remembering where each came from.
    merged = dict(data)
    origins: dict[PathKey, Origin] = {}
    maps: dict[str, tuple[YamlDocument, Any] | None] = {}
    devices = data.get("devices")
    if isinstance(devices, list):
        merged_devices = []
        for index, device in enumerate(devices):
            if not isinstance(device, dict) or not device.get("map"):
                merged_devices.append(device)
                continue
            device = dict(device)
            map_name = device["map"]
            loaded = _load_map(file.parent, str(map_name), maps, sink)
            map_file = file.parent / MAPS_DIR / f"{map_name}.yaml"
            if loaded is None:
                if not map_file.is_file():
                    sink.add(Origin(document, ("devices", index, "map")), f"no device map {map_file}")
                merged_devices.append(device)
                continue
            map_document, device_map = loaded
            if device_map.protocol != device.get("protocol"):
                sink.add(Origin(document, ("devices", index, "map")),
                         f"map {map_name!r} is for {device_map.protocol}, the device speaks "
                         f"{device.get('protocol')}")
            inline = device.get("points") or []
            map_points = map_document.data["points"]
            for offset in range(len(map_points)):
                origins[("devices", index, "points", offset)] = Origin(map_document, ("points", offset))
            for offset in range(len(inline) if isinstance(inline, list) else 0):
                origins[("devices", index, "points", len(map_points) + offset)] = Origin(
                    document, ("devices", index, "points", offset)
                )
            device["points"] = list(map_points) + (list(inline) if isinstance(inline, list) else [])
            merged_devices.append(device)
        merged["devices"] = merged_devices

    try:
        site = Site.model_validate(merged)
    except ValidationError as error:
        _schema_problems(error, document, (), merged, sink, remap=origins)
        return None, sink.sorted()
    check_site_semantics(site, document, origins, sink)
    return site, sink.sorted()


def load_site(path: str | Path) -> Site:
    """The validated site; raises SiteError listing every problem when there is any."""
    site, problems = read_site(path)
    if problems or site is None:
        raise SiteError(problems)
    return site
