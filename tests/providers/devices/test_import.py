"""Importing devices from CSV and JSON: bad rows name their place, good ones count."""

from __future__ import annotations

from pathlib import Path

from providers.devices.registry_import import (
    parse_csv_devices,
    parse_json_devices,
    read_device_file,
)


def test_csv_rows_with_problems_do_not_stop_the_others() -> None:
    batch = parse_csv_devices("id,group,tags\nm-1,meters,site:a;v2\n../x,meters,\nm-2,,\n"
                              "m-3,bad group,\n", "f.csv")
    assert [(r.id, r.group, r.tags) for r in batch.rows] == [
        ("m-1", "meters", ["site:a", "v2"]), ("m-2", "default", [])]
    assert batch.problems[0].startswith("f.csv: line 3: id: expected 1 to 128")
    assert batch.problems[1].startswith("f.csv: line 5: group: expected")


def test_json_lists_and_errors() -> None:
    batch = parse_json_devices('{"devices": [{"id": "a"}, {"id": "b", "tags": ["x y"]},'
                               ' 7, {"id": "c", "colour": "red"}]}', "d.json")
    assert [r.id for r in batch.rows] == ["a"]
    assert batch.problems == [
        "d.json: devices[1]: tags[0]: expected 1 to 64 letters, digits or _ . : = / @ -, "
        "got 'x y'",
        "d.json: devices[2]: expected an object with an id",
        "d.json: devices[3]: unknown key(s) colour"]
    assert parse_json_devices("[1,", "d.json").problems[0].startswith(
        "d.json: invalid JSON at line 1")
    assert parse_csv_devices("name\nx\n", "f.csv").problems == [
        "f.csv: line 1: expected a header with an id column"]


def test_an_unreadable_file_is_one_problem(tmp_path: Path) -> None:
    missing = read_device_file(tmp_path / "nope.csv")
    assert missing.rows == [] and "cannot read" in missing.problems[0]
