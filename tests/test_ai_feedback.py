"""AI feedback: the debiasing math by hand, fake judges for the mechanics, the micro model as a real judge."""

import json
import math

import pytest
from clirun import rlhflab

from rlhflab.core.comparison import PreferencePair, read_pairs, write_pairs
from rlhflab.core.errors import ConfigError, DataError, RlhflabError
from rlhflab.feedback.ai import (
    ELLIPSIS,
    AIFeedbackConfig,
    LMJudge,
    answer_token_ids,
    check_template,
    choice_probability,
    consistency,
    debiased_preference,
    judge_pairs,
    position_bias,
    render,
    share_budget,
    summary_path,
)
from rlhflab.feedback.judge_prompt import read_principles, read_template
from rlhflab.models.loading import load_policy

MICRO_TEMPLATE = "{principles}\n{prompt}\nA:{a}\nB:{b}\n?"
MICRO = AIFeedbackConfig(answer_a="A", answer_b="B", batch_size=4)


def test_scoring_math_by_hand():
    assert choice_probability(math.log(0.6), math.log(0.2)) == pytest.approx(0.75)
    assert choice_probability(-1e6, 0.0) == pytest.approx(0.0, abs=1e-300) and choice_probability(0.0, 0.0) == 0.5
    assert debiased_preference(0.9, 0.7) == pytest.approx(0.8)
    # AB order: P(A) = 0.9; BA order: the first completion is B, picked with 0.7, so P(A) = 0.3
    assert position_bias([0.9], [0.7]) == pytest.approx((0.9 + 0.3) / 2 - 0.5)
    assert position_bias([0.9, 0.6], [0.3, 0.2]) == pytest.approx(((0.9 + 0.7) / 2 + (0.6 + 0.8) / 2) / 2 - 0.5)
    assert consistency([0.9, 0.6, 0.5, 0.2], [0.7, 0.4, 0.8, 0.1]) == pytest.approx(2 / 4)
    assert share_budget([10, 3, 50], 30) == 17  # 10 + 3 + 17 = 30
    assert share_budget([10, 3, 50], 100) == 50 and share_budget([5, 5], 0) == 0


class PositionJudge:
    """Says A with probability 0.8 whatever it reads."""

    name = "position"

    def __init__(self):
        self.asked = []

    def answer_logprobs(self, items, progress=False):
        self.asked += list(items)
        return [(math.log(0.8), math.log(0.2))] * len(items)


class GoodWordJudge:
    """Likes the word 'good' (logit +2), and adds a position bias of +1 to answer A."""

    name = "goodword"

    def __init__(self, bias=1.0):
        self.bias = bias

    def answer_logprobs(self, items, progress=False):
        out = []
        for _, a, b in items:
            d = 2.0 * ("good" in a) - 2.0 * ("good" in b) + self.bias
            out.append((-math.log1p(math.exp(-d)), -math.log1p(math.exp(d))))  # log sigmoid(±d): mass 1
        return out


PAIRS = [
    PreferencePair("p1", " a good day", " a bad day", 1.0, "simulated:bt", {"gold_chosen": 1.0, "gold_rejected": -1.0}),
    PreferencePair("p2", " the cat", " the good dog", 1.0, "simulated:bt", {"gold_chosen": 0.0, "gold_rejected": 0.5}),
    PreferencePair("p3", " red", " big", 1.0, "simulated:bt"),
]


def test_pure_position_bias_is_cancelled_exactly_and_both_orders_are_asked():
    judge = PositionJudge()
    out, summary = judge_pairs(PAIRS, judge)
    assert [p.label for p in out] == [0.5, 0.5, 0.5]
    assert [(p.chosen, p.rejected) for p in out] == [(p.chosen, p.rejected) for p in PAIRS]  # ties keep their order
    assert summary["position_bias"] == pytest.approx(0.3) and summary["consistency"] == 0.0
    assert summary["ties"] == 3 and summary["answer_mass"] == pytest.approx(1.0)
    for p in PAIRS:
        assert (p.prompt, p.chosen, p.rejected) in judge.asked and (p.prompt, p.rejected, p.chosen) in judge.asked
    assert len(judge.asked) == 2 * len(PAIRS)


def test_preference_with_position_bias():
    out, summary = judge_pairs(PAIRS, GoodWordJudge(bias=1.0))

    def sig(x):
        return 1 / (1 + math.exp(-x))

    p_as_a, p_as_b = sig(2 + 1), sig(2 - 1)  # 'good' shown first (+bias), shown second (-bias)
    first = out[0]
    assert (first.chosen, first.rejected) == (" a good day", " a bad day")
    assert first.label == pytest.approx((p_as_a + p_as_b) / 2)
    assert first.scores["judge_p_chosen_as_a"] == pytest.approx(p_as_a)
    assert first.scores["judge_p_chosen_as_b"] == pytest.approx(p_as_b)
    assert first.scores["gold_chosen"] == 1.0 and first.source == "ai:goodword"
    # the judge prefers the input's rejected completion: swapped, gold scores swapped along
    second = out[1]
    assert (second.chosen, second.rejected) == (" the good dog", " the cat")
    assert second.label == pytest.approx(first.label)
    assert second.scores["gold_chosen"] == 0.5 and second.scores["gold_rejected"] == 0.0
    # no 'good' on either side: only the position bias, cancelled
    assert out[2].label == pytest.approx(0.5) and out[2].chosen == " red"
    assert all(0.5 <= p.label <= 1 for p in out)
    assert summary["agreement_with_gold"] == 1.0 and summary["gold_pairs"] == 2
    assert summary["consistency"] == pytest.approx(2 / 3)
    assert summary["position_bias"] == pytest.approx(sum((sig(d + 1) + sig(-d + 1)) / 2 for d in (2, -2, 0)) / 3 - 0.5)


def test_swapping_the_input_gives_one_minus_p():
    for pair in PAIRS:
        (a,), _ = judge_pairs([pair], GoodWordJudge(bias=0.7))
        (b,), _ = judge_pairs([pair.swapped()], GoodWordJudge(bias=0.7))
        assert (a.chosen, a.rejected) == (b.chosen, b.rejected) or a.label == pytest.approx(0.5)
        assert a.label == pytest.approx(b.label)
    # before the swap to the judge's preferred order: p(x, y) = 1 - p(y, x)
    assert debiased_preference(0.9, 0.7) == pytest.approx(1 - debiased_preference(1 - 0.7, 1 - 0.9))


def test_template_and_principles(tmp_path):
    assert render("{principles}|{prompt}|{a}|{b}", "use {a} and {b}", "q", "x", "{prompt}") == (
        "use {a} and {b}|q|x|{prompt}"
    )
    with pytest.raises(DataError, match=r"no \{b\} placeholder"):
        check_template("{principles} {prompt} {a}", "t.txt")
    (tmp_path / "t.txt").write_text("{principles} {prompt}\n{a}\n{b} {json: 1} Answer:\n\n")
    assert read_template(tmp_path / "t.txt") == "{principles} {prompt}\n{a}\n{b} {json: 1} Answer:"
    (tmp_path / "bad.txt").write_text("{principles} {a} {b}")
    with pytest.raises(DataError) as info:
        read_template(tmp_path / "bad.txt")
    assert str(tmp_path / "bad.txt") in str(info.value) and "{prompt}" in str(info.value)
    (tmp_path / "empty.txt").write_text(" \n")
    with pytest.raises(DataError, match="is empty"):
        read_principles(tmp_path / "empty.txt")
    with pytest.raises(DataError, match="no such file"):
        read_principles(tmp_path / "absent.txt")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        read_principles(tmp_path / "latin1.txt")


@pytest.fixture(scope="module")
def micro_judge(micro_model):
    return load_policy(micro_model)


def test_answers_with_the_same_first_token_are_refused(micro_judge):
    _, tokenizer = micro_judge
    with pytest.raises(ConfigError, match="start with the same token"):
        answer_token_ids(tokenizer, " A", " B")  # the micro tokenizer splits " A" into a space and "A"
    assert answer_token_ids(tokenizer, "A", "B") != answer_token_ids(tokenizer, "B", "A")


def test_micro_model_as_judge(micro_judge):
    model, tokenizer = micro_judge
    judge = LMJudge(model, tokenizer, "good", MICRO_TEMPLATE, MICRO, name="micro")
    long = " the cat sat on a mat and the dog ran" * 4
    pairs = [
        PreferencePair("the cat", " a good day.", " a bad day."),
        PreferencePair("a dog", " it ran", " the big red dog sat on the mat"),
        PreferencePair("red mat " * 12, long, " it sat." + long),
    ]
    out, summary = judge_pairs(pairs, judge)
    assert all(0.5 <= p.label <= 1 and p.source == "ai:micro" for p in out)
    for p in out:
        assert 0 <= p.scores["judge_p_chosen_as_a"] <= 1 and 0 <= p.scores["judge_p_chosen_as_b"] <= 1
        assert p.label == pytest.approx((p.scores["judge_p_chosen_as_a"] + p.scores["judge_p_chosen_as_b"]) / 2)
        assert 0 < p.scores["judge_answer_mass"] <= 1
    assert -0.5 <= summary["position_bias"] <= 0.5 and 0 <= summary["consistency"] <= 1
    # the long pair was cut to the 64-token context, keeping the principles and the question
    assert summary["truncated_queries"] == 2
    text, n, cut = judge.query(pairs[2].prompt, pairs[2].chosen, pairs[2].rejected)
    assert cut and n <= 64 and text.startswith("good\n" + ELLIPSIS + " mat red mat") and text.endswith("\n?")
    assert "\nA:" + ELLIPSIS in text and "\nB:" + ELLIPSIS in text
    # swapping the input's completions gives the same judgement; batch size and padding do not matter
    one_at_a_time = AIFeedbackConfig(batch_size=1, answer_a="A", answer_b="B")
    other = LMJudge(model, tokenizer, "good", MICRO_TEMPLATE, one_at_a_time, name="micro")
    swapped, _ = judge_pairs([p.swapped() for p in pairs], other)
    for a, b in zip(out, swapped):
        assert a.label == pytest.approx(b.label, abs=1e-5)
        assert (a.chosen, a.rejected) == (b.chosen, b.rejected) or abs(a.label - 0.5) < 1e-5


def test_context_too_small_for_the_principles_is_an_error(micro_judge):
    model, tokenizer = micro_judge
    with pytest.raises(RlhflabError, match=r"principles and template take \d+ tokens of the judge's 64-token"):
        LMJudge(model, tokenizer, "good " * 40, MICRO_TEMPLATE, MICRO)
    with pytest.raises(RlhflabError, match="32-token context"):
        LMJudge(model, tokenizer, "good", MICRO_TEMPLATE, AIFeedbackConfig(answer_a="A", answer_b="B", max_length=32))


def test_cli_ai_feedback(micro_model, tmp_path, capsys):
    from rlhflab.cli import main

    write_pairs(tmp_path / "pairs.jsonl", PAIRS)
    (tmp_path / "principles.txt").write_text("good\n")
    (tmp_path / "template.txt").write_text(MICRO_TEMPLATE)
    run = tmp_path / "run"
    out = rlhflab(
        "feedback", "ai", "--judge", micro_model, "--principles", tmp_path / "principles.txt",
        "--template", tmp_path / "template.txt", "--pairs", tmp_path / "pairs.jsonl", "--out", run / "ai.jsonl",
        "--run-dir", run, "--answer-a", "A", "--answer-b", "B", "--quiet", check=True,
    )  # fmt: skip
    assert "wrote 3 pairs" in out.stdout and "position bias" in out.stdout and "consistency" in out.stdout
    labelled = read_pairs(run / "ai.jsonl")
    assert len(labelled) == 3 and all(p.source == "ai:model" and 0.5 <= p.label <= 1 for p in labelled)
    summary = json.loads(summary_path(run / "ai.jsonl").read_text())
    assert summary["pairs"] == 3 and summary["answers"] == ["A", "B"] and summary["context_tokens"] == 64
    stage = json.loads((run / "manifest.json").read_text())["stages"]["feedback_ai"]
    assert stage["status"] == "done" and stage["config"]["answer_a"] == "A" and "pairs" in stage["inputs"]
    # a template without {prompt}: one line naming it, exit 2, nothing written
    (tmp_path / "bad.txt").write_text("{principles} {a} {b}")
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main([
            "feedback", "ai", "--judge", str(micro_model), "--principles", str(tmp_path / "principles.txt"),
            "--pairs", str(tmp_path / "pairs.jsonl"), "--out", str(tmp_path / "x.jsonl"),
            "--template", str(tmp_path / "bad.txt"),
        ])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and err.startswith("error:") and "{prompt}" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x.jsonl").exists()


def test_a_judge_with_a_chat_template_is_asked_in_a_user_turn(micro_judge):
    import copy

    from rlhflab.feedback.judge_prompt import CHAT_TEMPLATE, DEFAULT_TEMPLATE

    model, tokenizer = micro_judge
    tokenizer = copy.deepcopy(tokenizer)
    tokenizer.chat_template = "{% for m in messages %}[{{ m['content'] }}]{% endfor %} mat"
    judge = LMJudge(model, tokenizer, "good", MICRO_TEMPLATE, AIFeedbackConfig(batch_size=2), name="micro")
    assert judge.chat and judge.answers == ("A", "B")  # an assistant's turn starts with the letter, no space
    text, _, cut = judge.query("the cat", " a good day.", " a bad day.")
    assert not cut and text == "[good\nthe cat\nA:a good day.\nB:a bad day.\n?] mat"
    out, summary = judge_pairs([PreferencePair("the cat", " a good day.", " a bad day.")], judge)
    assert 0.5 <= out[0].label <= 1 and 0 < summary["answer_mass"] <= 1
    # asked in plain text instead, the default answers are " A" and " B", which this tokenizer cannot tell apart
    with pytest.raises(ConfigError, match="start with the same token"):
        LMJudge(model, tokenizer, "good", MICRO_TEMPLATE, AIFeedbackConfig(chat_template="none"))
    plain = LMJudge(model, tokenizer, "good", MICRO_TEMPLATE, AIFeedbackConfig(chat_template="none", **ANSWERS))
    assert not plain.chat and plain.query("the cat", "a", "b")[0] == "good\nthe cat\nA:a\nB:b\n?"
    assert CHAT_TEMPLATE.endswith("A or B.") and DEFAULT_TEMPLATE.endswith("Answer:")
    with pytest.raises(ConfigError, match="--chat-template must be 'auto' or 'none'"):
        AIFeedbackConfig(chat_template="yes")


ANSWERS = {"answer_a": "A", "answer_b": "B"}
