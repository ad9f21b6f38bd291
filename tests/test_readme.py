"""The README opens with the two commands, and CI runs the second one as written."""

from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_readme_opens_with_run_and_test_commands_and_ci_runs_the_test_command() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    fence = lines.index("```bash")
    run_cmd, test_cmd, close = lines[fence + 1 : fence + 4]
    assert fence < 5
    assert close == "```"
    assert "inferbox serve" in run_cmd
    assert "pytest" in test_cmd
    assert test_cmd in (ROOT / ".ci" / "run").read_text().splitlines()
