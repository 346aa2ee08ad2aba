"""Import from and export to TRL/OpenRLHF and Anthropic HH-RLHF JSONL: round trips, the HH split, every error."""

import json

import pytest
from clirun import rlhflab

from rlhflab.core.comparison import PreferencePair, read_pairs, write_pairs
from rlhflab.core.errors import DataError
from rlhflab.feedback.formats import export_records, read_foreign, split_hh, write_records

HH_PROMPT = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how are you?\n\nAssistant:"


def lines(path, *records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")
    return path


def triple(p):
    return (p.prompt, p.chosen, p.rejected)


def test_trl_round_trip(tmp_path):
    ours = [
        PreferencePair("The movie was", ' great, "really"', " dull\nand long", 1.0, "simulated:bt", {"gold_chosen": 1}),
        PreferencePair("", " ü 💡", " {a}", 1.0, "human:ann"),
        PreferencePair(HH_PROMPT, " fine", " go away", 0.9, "ai:judge"),
    ]
    records, stats = export_records(ours, "trl")
    assert records[0] == {"prompt": "The movie was", "chosen": ' great, "really"', "rejected": " dull\nand long"}
    assert stats == {"pairs": 3, "written": 3, "swapped": 0, "ties_dropped": 0, "ties_kept": 0}
    write_records(tmp_path / "trl.jsonl", records)
    back, stats = read_foreign(tmp_path / "trl.jsonl")
    assert stats.format == "trl" and stats.pairs == 3
    assert [triple(p) for p in back] == [triple(p) for p in ours]
    assert all(p.label == 1.0 and p.source == "import:trl" and p.scores == {} for p in back)


def test_hh_round_trip(tmp_path):
    ours = [
        PreferencePair("\n\nHuman: hi\n\nAssistant:", " hello there", " go away"),
        PreferencePair(HH_PROMPT, " good, thanks!", " why do you ask"),
        PreferencePair("\n\nHuman: a\n\nAssistant:", " yes", " yes, and more"),  # one completion extends the other
    ]
    records, _ = export_records(ours, "hh")
    assert records[0] == {
        "chosen": "\n\nHuman: hi\n\nAssistant: hello there",
        "rejected": "\n\nHuman: hi\n\nAssistant: go away",
    }
    write_records(tmp_path / "hh.jsonl", records)
    back, stats = read_foreign(tmp_path / "hh.jsonl")
    assert stats.format == "hh" and stats.diverged_early == 0
    assert [triple(p) for p in back] == [triple(p) for p in ours]
    assert {p.source for p in back} == {"import:hh"}


def test_real_looking_hh_record_splits_at_the_last_assistant_turn():
    assert split_hh("\n\nHuman: hi\n\nAssistant: hello there", "\n\nHuman: hi\n\nAssistant: go away") == (
        "\n\nHuman: hi\n\nAssistant:",
        " hello there",
        " go away",
    )
    # multi-turn: the shared earlier turns (including an earlier Assistant turn) stay in the prompt
    chosen = HH_PROMPT + " good, thanks!"
    rejected = HH_PROMPT + " go away"
    assert split_hh(chosen, rejected) == (HH_PROMPT, " good, thanks!", " go away")
    # the shared prefix "...Assistant: g" ends inside the last turn: the cut is still at the marker
    assert split_hh(HH_PROMPT + " good", HH_PROMPT + " great")[0] == HH_PROMPT
    assert split_hh("\n\nHuman: a\n\nAssistant: x", "\n\nHuman: b\n\nAssistant: x") is None


def test_hh_pairs_that_differ_before_the_last_turn_are_counted(tmp_path):
    chosen = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: thanks\n\nAssistant: welcome"
    rejected = "\n\nHuman: hi\n\nAssistant: go away\n\nHuman: rude\n\nAssistant: sorry"
    path = lines(
        tmp_path / "hh.jsonl",
        {"chosen": "\n\nHuman: x\n\nAssistant: a", "rejected": "\n\nHuman: x\n\nAssistant: b"},
        {"chosen": chosen, "rejected": rejected},
    )
    pairs, stats = read_foreign(path, "hh")
    assert stats.diverged_early == 1 and stats.first_lines["diverged_early"] == 2
    assert pairs[1].prompt == "\n\nHuman: hi\n\nAssistant:"
    assert pairs[1].chosen == " hello\n\nHuman: thanks\n\nAssistant: welcome"


def test_conversational_trl_is_rendered_as_hh_text(tmp_path):
    record = {
        "prompt": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "how are you?"},
        ],
        "chosen": [{"role": "assistant", "content": "good, thanks!"}],
        "rejected": [{"role": "assistant", "content": "why do you ask"}],
    }
    implicit = {  # TRL's implicit-prompt conversational form: whole conversations, read as hh
        "chosen": record["prompt"] + record["chosen"],
        "rejected": record["prompt"] + record["rejected"],
    }
    (pair,), stats = read_foreign(lines(tmp_path / "c.jsonl", record))
    assert stats.format == "trl" and stats.conversational == 1
    assert pair.prompt == "\n\nSystem: be brief" + HH_PROMPT
    assert (pair.chosen, pair.rejected) == (" good, thanks!", " why do you ask")
    (same,), stats = read_foreign(lines(tmp_path / "i.jsonl", implicit))
    assert stats.format == "hh" and triple(same) == triple(pair)


def test_auto_detects_per_file_and_names_what_it_found(tmp_path):
    path = lines(tmp_path / "kto.jsonl", "", {"prompt": "x", "completion": " y", "label": True})
    with pytest.raises(DataError) as info:
        read_foreign(path)
    err = info.value
    assert err.line == 2 and err.path == str(path)
    assert "found keys completion, label, prompt" in str(err)
    assert "trl (prompt, chosen, rejected" in str(err) and "hh (chosen, rejected" in str(err)
    with pytest.raises(DataError, match="found a JSON list"):
        read_foreign(lines(tmp_path / "list.jsonl", ["a", "b"]))
    with pytest.raises(DataError, match="looks like one JSON array"):
        read_foreign(lines(tmp_path / "array.jsonl", '[{"prompt": "x",'))


GOOD = {"prompt": "p", "chosen": " a", "rejected": " b"}


@pytest.mark.parametrize(
    "fmt, bad, field, message",
    [
        ("auto", '{"prompt": "p", "chosen": " a"', None, "not valid JSON"),
        ("auto", {"prompt": "p", "chosen": " a"}, "rejected", "missing (format trl needs prompt, chosen, rejected)"),
        ("auto", {"prompt": "p", "chosen": 3, "rejected": " b"}, "chosen", "expected a string or a list"),
        ("auto", {"prompt": "p", "chosen": " a", "rejected": "  "}, "rejected", "the completion is empty"),
        (
            "auto",
            {"prompt": "p", "chosen": [{"role": "assistant", "content": "a"}], "rejected": " b"},
            "prompt",
            "is a string while",
        ),
        (
            "auto",
            {
                "prompt": [{"role": "user", "content": "q"}],
                "chosen": [{"role": "user", "content": "a"}],
                "rejected": [{"role": "assistant", "content": "b"}],
            },
            "chosen[0]",
            "role 'assistant'",
        ),
        (
            "auto",
            {
                "prompt": [{"role": "robot", "content": "q"}],
                "chosen": [{"role": "assistant", "content": "a"}],
                "rejected": [{"role": "assistant", "content": "b"}],
            },
            "prompt[0]",
            "role 'robot' is not one of",
        ),
        (
            "auto",
            {
                "prompt": [{"role": ["user"], "content": "q"}],
                "chosen": [{"role": "assistant", "content": "a"}],
                "rejected": [{"role": "assistant", "content": "b"}],
            },
            "prompt[0]",
            "role must be a string, got list",
        ),
        ("auto", ["p", "a", "b"], None, "expected a JSON object, got list"),
        (
            "hh",
            {"chosen": "\n\nHuman: a\n\nAssistant: x", "rejected": "\n\nHuman: b\n\nAssistant: y"},
            None,
            "share no prefix ending in",
        ),
        ("hh", {"chosen": "\n\nHuman: a\n\nAssistant: x", "rejected": "just text"}, "rejected", "has no"),
        (
            "hh",
            {"chosen": "\n\nHuman: a\n\nAssistant: x", "rejected": "\n\nHuman: a\n\nAssistant:"},
            "rejected",
            "the completion is empty",
        ),
        ("hh", {"chosen": "\n\nHuman: a\n\nAssistant: x"}, "rejected", "missing (format hh needs chosen, rejected)"),
    ],
)
def test_bad_records_name_file_line_and_field(tmp_path, fmt, bad, field, message):
    first = (
        GOOD if fmt != "hh" else {"chosen": "\n\nHuman: q\n\nAssistant: a", "rejected": "\n\nHuman: q\n\nAssistant: b"}
    )
    path = lines(tmp_path / "bad.jsonl", first, bad)
    with pytest.raises(DataError) as info:
        read_foreign(path, fmt)
    err = info.value
    assert (err.path, err.line, err.field) == (str(path), 2, field)
    assert message in str(err) and f"{path}, line 2" in str(err)


def test_identical_pairs_are_counted_and_the_first_line_named(tmp_path):
    same = {"prompt": "p", "chosen": " x", "rejected": " x"}
    path = lines(tmp_path / "same.jsonl", GOOD, same, GOOD, same, same)
    with pytest.raises(DataError) as info:
        read_foreign(path)
    assert info.value.line == 2 and "3 record(s) have chosen equal to rejected" in str(info.value)
    assert "--skip-identical" in str(info.value)
    pairs, stats = read_foreign(path, skip_identical=True)
    assert len(pairs) == 2 and stats.skipped_identical == 3 and stats.first_lines["skipped_identical"] == 2
    with pytest.raises(DataError, match="no pairs left"):
        read_foreign(lines(tmp_path / "only.jsonl", same), skip_identical=True)
    with pytest.raises(DataError, match="holds no records"):
        read_foreign(lines(tmp_path / "empty.jsonl", ""))
    with pytest.raises(DataError, match="no such file"):
        read_foreign(tmp_path / "absent.jsonl")


def test_export_writes_the_preferred_completion_as_chosen():
    pairs = [
        PreferencePair("p", " a", " b", 0.2, "ai:j", {"gold_chosen": 1.0, "gold_rejected": 2.0}),
        PreferencePair("p", " c", " d", 0.5),
        PreferencePair("p", " e", " f", 1.0),
    ]
    with pytest.raises(DataError, match=r"1 pair\(s\) are ties \(label 0.5; first: pair 2\)"):
        export_records(pairs, "trl")
    records, stats = export_records(pairs, "trl", ties="drop")
    assert [(r["chosen"], r["rejected"]) for r in records] == [(" b", " a"), (" e", " f")]
    assert stats["swapped"] == 1 and stats["ties_dropped"] == 1 and stats["written"] == 2
    records, stats = export_records(pairs, "trl", ties="keep")
    assert [r["chosen"] for r in records] == [" b", " c", " e"] and stats["ties_kept"] == 1


def test_hh_export_refuses_prompts_it_cannot_bring_back():
    with pytest.raises(DataError, match=r"pair 1: .*does not end with '\\n\\nAssistant:'.*--format trl"):
        export_records([PreferencePair("The movie was", " good", " bad")], "hh")
    later = PreferencePair(
        "\n\nHuman: a\n\nAssistant:", " x\n\nHuman: b\n\nAssistant: y", " x\n\nHuman: b\n\nAssistant: z"
    )
    with pytest.raises(DataError, match="share a later"):
        export_records([later], "hh")


def test_swapped_pair_exchanges_score_names():
    pair = PreferencePair("p", " a", " b", 0.8, "s", {"gold_chosen": 1.0, "gold_rejected": 0.0, "p_chosen": 0.8})
    other = pair.swapped()
    assert (other.chosen, other.rejected, other.label) == (" b", " a", pytest.approx(0.2))
    assert other.scores == {"gold_rejected": 1.0, "gold_chosen": 0.0, "p_rejected": 0.8}
    assert other.swapped() == PreferencePair("p", " a", " b", pytest.approx(0.8), "s", pair.scores)


def test_cli_import_export_round_trip_and_errors_leave_no_file(tmp_path, capsys):
    from rlhflab.cli import main

    src = lines(
        tmp_path / "hh.jsonl",
        {"chosen": "\n\nHuman: hi\n\nAssistant: hello there", "rejected": "\n\nHuman: hi\n\nAssistant: go away"},
        {"chosen": HH_PROMPT + " fine", "rejected": HH_PROMPT + " bad", "extra": 1},
    )
    out = rlhflab("feedback", "import", src, "--out", tmp_path / "pairs.jsonl", check=True)
    assert "wrote 2 pairs" in out.stdout and "format hh" in out.stdout
    pairs = read_pairs(tmp_path / "pairs.jsonl")
    assert [p.chosen for p in pairs] == [" hello there", " fine"]
    main(["feedback", "export", str(tmp_path / "pairs.jsonl"), "--format", "hh", "--out", str(tmp_path / "back.jsonl")])
    assert [json.loads(x) for x in (tmp_path / "back.jsonl").read_text().splitlines()] == [
        {k: v for k, v in json.loads(x).items() if k != "extra"} for x in src.read_text().splitlines()
    ]
    # an error on line 3 writes nothing: the earlier output stays as it was, no temporary file is left
    bad = lines(tmp_path / "bad.jsonl", GOOD, GOOD, {"prompt": "p", "chosen": " a", "rejected": 7})
    before = (tmp_path / "pairs.jsonl").read_text()
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(["feedback", "import", str(bad), "--out", str(tmp_path / "pairs.jsonl")])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "Traceback" not in err
    assert err.strip() == f"error: {bad}, line 3: field 'rejected': expected a string or a list of messages, got int"
    assert (tmp_path / "pairs.jsonl").read_text() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_cli_export_error_writes_nothing(tmp_path, capsys):
    from rlhflab.cli import main

    write_pairs(tmp_path / "tie.jsonl", [PreferencePair("p", " a", " b", 0.5)])
    with pytest.raises(SystemExit) as info:
        main(["feedback", "export", str(tmp_path / "tie.jsonl"), "--format", "trl", "--out", str(tmp_path / "t.jsonl")])
    assert info.value.code == 2 and "--ties drop" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tie.jsonl"]
    main(
        [
            "feedback",
            "export",
            str(tmp_path / "tie.jsonl"),
            "--format",
            "trl",
            "--ties",
            "keep",
            "--out",
            str(tmp_path / "t.jsonl"),
        ]
    )
    assert "wrote 1 trl records" in capsys.readouterr().out
    assert json.loads((tmp_path / "t.jsonl").read_text()) == {"prompt": "p", "chosen": " a", "rejected": " b"}
