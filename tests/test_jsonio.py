"""Reading JSON files and records with one-line errors that name the file."""

from __future__ import annotations

import pytest

from synthloop.errors import DatasetError, SynthloopError
from synthloop.jsonio import read_json, reading, require_schema


def test_read_json_parses_and_names_the_file_on_errors(tmp_path):
    ok = tmp_path / "ok.json"
    ok.write_text('{"a": [1, 2]}')
    assert read_json(ok) == {"a": [1, 2]}
    with pytest.raises(DatasetError, match=r"missing\.json: slice table not found"):
        read_json(tmp_path / "missing.json", DatasetError, "slice table")
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": 1,\n "b": }')
    with pytest.raises(DatasetError, match=r"bad\.json: invalid JSON in file \(.* at line 2 column 7\)"):
        read_json(bad, DatasetError)
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(SynthloopError, match="cannot read file"):
        read_json(tmp_path / "dir.json")


def test_require_schema_and_reading_turn_bad_records_into_one_error():
    require_schema({"schema": "x/1"}, "x/1", "slice table", DatasetError, "t.json")
    for d in ({"schema": "x/2"}, [], None):
        with pytest.raises(DatasetError, match=r"t\.json: not a slice table \(schema must be 'x/1'\)"):
            require_schema(d, "x/1", "slice table", DatasetError, "t.json")
    with pytest.raises(DatasetError, match="not an evaluation report"):
        require_schema({}, "x/1", "evaluation report", DatasetError, None)
    malformed = r"t\.json: malformed slice table \(KeyError: 'rows'\)"
    with pytest.raises(DatasetError, match=malformed), reading("slice table", DatasetError, "t.json"):
        {}["rows"]
    with reading("slice table", DatasetError, None):  # no error: nothing raised
        pass
