"""The README's Python API example runs as written: DPO and GRPO on an nn.Module, without the CLI."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_api_example_runs(tmp_path, monkeypatch, capsys):
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Python API") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    dpo, grpo, rows = namespace["dpo"], namespace["grpo"], namespace["rows"]
    assert dpo.summary["steps"] == 2 and len(dpo.history) == 2 and "dpo/accuracy" in dpo.history[-1]
    assert [r["step"] for r in rows] == [1, 2] and grpo.history == rows
    assert grpo.policy is dpo.policy  # trained in place, returned unwrapped
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(tmp_path / "my_policy").num_parameters() > 0
    assert len(capsys.readouterr().out.splitlines()) == 2
