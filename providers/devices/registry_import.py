"""Reading a device list to import (CSV or JSON): each bad row is a problem naming its
place; the good rows are imported all the same.

CSV: a header with ``id`` and optionally ``group`` and ``tags`` (tags separated by
``;`` or spaces). JSON: a list of ``{"id", "group"?, "tags"?}`` or ``{"devices": [...]}``.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from providers.devices.registry_keys import DEFAULT_GROUP, check_device_id, check_group, check_tags

MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_ROWS = 1_000_000


@dataclass(frozen=True)
class DeviceRow:
    id: str
    group: str = DEFAULT_GROUP
    tags: list[str] = field(default_factory=list)


@dataclass
class ImportBatch:
    rows: list[DeviceRow] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def read_device_file(path: Path, file_format: str | None = None) -> ImportBatch:
    """``file_format``: ``csv`` or ``json`` (default: from the file's suffix)."""
    kind = file_format or ("json" if path.suffix.lower() == ".json" else "csv")
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            return ImportBatch(problems=[f"{path}: over {MAX_FILE_BYTES // 2**20} MiB"])
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return ImportBatch(problems=[f"{path}: cannot read: {exc}"])
    return parse_json_devices(text, str(path)) if kind == "json" else parse_csv_devices(
        text, str(path))


def parse_csv_devices(text: str, where: str) -> ImportBatch:
    batch = ImportBatch()
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or "id" not in reader.fieldnames:
        return ImportBatch(problems=[f"{where}: line 1: expected a header with an id column"])
    for number, record in enumerate(reader, start=2):
        if number - 1 > MAX_ROWS:
            batch.problems.append(f"{where}: more than {MAX_ROWS} rows; the rest is ignored")
            break
        tags = (record.get("tags") or "").replace(";", " ").split()
        _add(batch, {"id": record.get("id"), "group": record.get("group") or DEFAULT_GROUP,
                     "tags": tags}, f"{where}: line {number}")
    return batch


def parse_json_devices(text: str, where: str) -> ImportBatch:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        return ImportBatch(problems=[f"{where}: invalid JSON at line {exc.lineno}, "
                                     f"column {exc.colno}: {exc.msg}"])
    items = document.get("devices") if isinstance(document, dict) else document
    if not isinstance(items, list):
        return ImportBatch(problems=[f"{where}: expected a list of devices or "
                                     '{"devices": [...]}'])
    batch = ImportBatch()
    for index, item in enumerate(items[:MAX_ROWS]):
        _add(batch, item, f"{where}: devices[{index}]")
    if len(items) > MAX_ROWS:
        batch.problems.append(f"{where}: more than {MAX_ROWS} devices; the rest is ignored")
    return batch


def _add(batch: ImportBatch, item: Any, where: str) -> None:
    if not isinstance(item, dict):
        batch.problems.append(f"{where}: expected an object with an id")
        return
    unknown = sorted(set(item) - {"id", "group", "tags"})
    try:
        if unknown:
            raise ValueError(f"unknown key(s) {', '.join(unknown)}")
        batch.rows.append(DeviceRow(check_device_id(item.get("id"), "id"),
                                    check_group(item.get("group", DEFAULT_GROUP)),
                                    check_tags(item.get("tags", []))))
    except ValueError as exc:
        batch.problems.append(f"{where}: {exc}")
