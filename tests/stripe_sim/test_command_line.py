"""`dataface-billing stripe-simulator` and `python -m stripe_sim` take the same options."""

from __future__ import annotations

import pytest

import cli
from stripe_sim.__main__ import build_parser, serve


@pytest.mark.parametrize(
    "argv",
    [
        [],
        [
            "--host",
            "0.0.0.0",
            "--port",
            "12999",
            "--retries-exhausted",
            "unpaid",
            "--public-url",
            "http://sim.example:12999",
            "--log-level",
            "debug",
        ],
    ],
)
def test_both_commands_read_the_same_options_alike(argv: list[str]) -> None:
    standalone = vars(build_parser().parse_args(argv))
    through_cli = vars(cli.build_parser().parse_args(["stripe-simulator", *argv]))

    assert through_cli.pop("command") == "stripe-simulator"
    assert through_cli.pop("handler") is serve
    assert through_cli == standalone


def test_an_unknown_choice_is_refused_by_both(capsys: pytest.CaptureFixture[str]) -> None:
    for parse in (
        lambda: build_parser().parse_args(["--retries-exhausted", "forgive"]),
        lambda: cli.build_parser().parse_args(["stripe-simulator", "--log-level", "loud"]),
    ):
        with pytest.raises(SystemExit) as exited:
            parse()
        assert exited.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
