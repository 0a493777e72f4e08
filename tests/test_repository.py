"""The README's two commands and CI stay in step."""

import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _readme_commands():
    lines = (ROOT / "README.md").read_text().splitlines()
    start = lines.index("```bash") + 1
    end = lines.index("```", start)
    return lines[start:end]


def test_readme_opens_with_exactly_two_commands():
    commands = _readme_commands()
    assert len(commands) == 2
    assert all(c.startswith("python3 -m venv .venv && ") for c in commands)
    assert "pytest" in commands[1]


def test_ci_runs_exactly_the_readme_test_command():
    ci = [line for line in (ROOT / ".ci/run").read_text().splitlines()
          if line.strip() and not line.startswith("#") and not line.startswith("set ")
          and not line.startswith("cd ")]
    assert ci == [_readme_commands()[1]]


def test_readme_python_sample_runs():
    text = (ROOT / "README.md").read_text()
    for block in text.split("```python")[1:]:
        code = block.split("```")[0]
        exec(compile(code, "README.md", "exec"), {})  # noqa: S102


def test_star_import_does_not_rebind_math_or_keras():
    import math

    import keras

    namespace = {"math": math, "keras": keras}
    exec("from tfp_gauss import *", namespace)  # noqa: S102
    assert namespace["math"] is math and namespace["keras"] is keras
    import tfp_gauss  # the submodules stay reachable as attributes
    assert tfp_gauss.math.root_finding and tfp_gauss.keras.GaussianizationFlowModel
