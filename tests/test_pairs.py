"""PreferencePair JSONL: round trip, and every malformed input named by file, line and field."""

import json

import pytest

from rlhflab.core.comparison import PreferencePair, read_pairs, write_pairs
from rlhflab.core.errors import DataError


def test_round_trip(tmp_path):
    pairs = [
        PreferencePair("p", " a", " b", 1.0, "simulated:bt", {"gold_chosen": 0.5}),
        PreferencePair("q <script>", " ü", " 💡", 0.5, "human:ann"),
    ]
    path = tmp_path / "pairs.jsonl"
    write_pairs(path, pairs)
    assert read_pairs(path) == pairs
    first = json.loads(path.read_text().splitlines()[0])
    assert {"prompt", "chosen", "rejected", "label", "source", "scores"} <= first.keys()


def test_trl_style_minimal_lines_are_accepted(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "x", "chosen": " good", "rejected": " bad"}\n\n')
    (pair,) = read_pairs(path)
    assert pair.label == 1.0 and pair.source == "unknown"


@pytest.mark.parametrize(
    "line, field, message",
    [
        ('{"prompt": "x", "chosen": "a"', None, "not valid JSON"),
        ('{"prompt": "x", "chosen": "a"}', "rejected", "missing"),
        ('{"prompt": 3, "chosen": "a", "rejected": "b"}', "prompt", "expected a string, got int"),
        ('{"prompt": "x", "chosen": " ", "rejected": "b"}', "chosen", "is empty"),
        ('{"prompt": "x", "chosen": "a", "rejected": "b", "label": 2}', "label", "in [0, 1]"),
        ('{"prompt": "x", "chosen": "a", "rejected": "b", "label": "yes"}', "label", "in [0, 1]"),
        ('{"prompt": "x", "chosen": "a", "rejected": "b", "scores": {"g": "high"}}', "scores", "name: number"),
        ('["x", "a", "b"]', None, "expected a JSON object"),
    ],
)
def test_bad_lines_name_file_line_and_field(tmp_path, line, field, message):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "ok", "chosen": "a", "rejected": "b"}\n' + line + "\n")
    with pytest.raises(DataError) as info:
        read_pairs(path)
    err = info.value
    assert err.line == 2 and err.field == field and err.path == str(path)
    assert message in str(err) and f"{path}, line 2" in str(err)


def test_empty_and_missing_files(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(DataError, match="holds no preference pairs"):
        read_pairs(empty)
    with pytest.raises(DataError, match="no such file"):
        read_pairs(tmp_path / "absent.jsonl")


def test_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "pairs.jsonl"
    write_pairs(path, [PreferencePair("p", "a", "b")])
    before = path.read_text()

    def broken_pairs():
        yield PreferencePair("p2", "c", "d")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_pairs(path, broken_pairs())
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["pairs.jsonl"]
