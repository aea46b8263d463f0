"""The ``scpert`` command: describe tables, method listing, clear errors."""

import subprocess
import sys
from pathlib import Path

import pytest

from scpert.cli import human_count, main
from scpert.methods import available_methods


def parse_table(text: str) -> dict[str, int]:
    """module -> parameters from the describe table (rows after the header)."""
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("module"))
    return {line.split()[0]: int(line.split()[1].replace(",", "")) for line in lines[header + 1 :]}


def test_describe_base_mlp_tiny_rows_and_total(capsys):
    assert main(["describe", "base_mlp", "--preset", "tiny"]) == 0
    rows = parse_table(capsys.readouterr().out)
    n_in, hidden, n_genes = (
        2 * 1024 + 4,
        64,
        500,
    )  # tiny preset: 1024 bits, 4 context PCs, 500 genes
    assert rows == {
        "mlp.input": n_in * hidden + hidden,
        "mlp.output": hidden * n_genes + n_genes,
        "total": n_in * hidden + hidden + hidden * n_genes + n_genes,
    }
    assert rows["total"] == sum(v for k, v in rows.items() if k != "total")


def test_describe_base_reg_paper_default_preset(capsys):
    assert main(["describe", "base_reg"]) == 0
    out = capsys.readouterr().out
    assert "(preset paper)" in out
    rows = parse_table(out)
    assert (
        rows["total"] == (2048 + 10) * 5000 + 5000 == rows["ridge.coef"] + rows["ridge.intercept"]
    )


def test_describe_non_parametric_has_zero_total(capsys):
    assert main(["describe", "train_mean", "--preset", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "no trainable parameters" in out and parse_table(out) == {"total": 0}


@pytest.mark.parametrize(
    "argv, message",
    [
        (["describe", "nope"], "unknown method 'nope' (available: additive, base_control"),
        (
            ["describe", "base_mlp", "--preset", "huge"],
            "method 'base_mlp' has no preset 'huge' (has: tiny, paper)",
        ),
    ],
)
def test_unknown_method_or_preset_exits_nonzero_with_message(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code != 0
    assert message in capsys.readouterr().err


def test_methods_lists_every_registered_method_with_presets(capsys):
    assert main(["methods"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == available_methods()
    assert {
        "base_control",
        "train_mean",
        "perturb_mean",
        "context_mean",
        "base_reg",
        "base_mlp",
        "additive",
    } <= set(available_methods())
    assert all("presets: tiny, paper" in line for line in lines)


def test_human_count():
    assert [human_count(n) for n in (999, 1_600, 85_000_000, 2_500_000_000)] == [
        "999",
        "1.6K",
        "85.0M",
        "2.5B",
    ]


def test_console_script_entry_point():
    script = Path(sys.executable).parent / "scpert"
    if not script.exists():
        pytest.skip("scpert console script not installed next to this interpreter")
    done = subprocess.run(
        [str(script), "describe", "unknown_method"], capture_output=True, text=True
    )
    assert done.returncode == 2 and "unknown method 'unknown_method'" in done.stderr
