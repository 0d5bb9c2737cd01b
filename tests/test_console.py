"""The command line's progress: redrawn in place on a terminal, a line per tenth of the work in a log."""
from __future__ import annotations

import io

from faults import run_cli

from sipp_core.console import ProgressPrinter, warning_line


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def feed(printer: ProgressPrinter, n: int = 200) -> None:
    printer(0.0, "forward pass over S (152 points)")
    for i in range(1, n + 1):
        printer(i / n, f"point {i} of {n}")


def test_a_log_gets_a_line_per_tenth_and_no_carriage_returns():
    log = io.StringIO()
    feed(ProgressPrinter("sweep", stream=log))
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert lines[0] == "sweep: forward pass over S (152 points)"
    assert len(lines) == 1 + 10 + 1  # the announcement, a line as each tenth begins (0%-90%), the end
    assert lines[1] == "sweep   0.5% point 1 of 200" and lines[-1] == "sweep 100.0% point 200 of 200"
    assert [line.split()[1] for line in lines[2:-1]] == [f"{10 * k}.0%" for k in range(1, 10)]


def test_a_terminal_gets_one_line_redrawn_in_place():
    tty = Terminal()
    feed(ProgressPrinter("prune", stream=tty), n=4)
    out = tty.getvalue()
    assert out.startswith("prune: forward pass over S (152 points)\n")
    assert out.count("\r") == 4 and out.endswith("\n") and out.count("\n") == 2
    assert "\rprune [###############               ]  50.0% point 2 of 4" in out


def test_an_announcement_after_a_bar_starts_a_line_of_its_own():
    tty = Terminal()
    p = ProgressPrinter("train", stream=tty)
    p(0.5, "epoch 1")
    p(0.0, "fine-tuning starts")
    assert tty.getvalue().endswith("epoch 1" + " " * 53 + "\ntrain: fine-tuning starts\n")


def test_the_next_job_through_the_same_printer_is_logged_afresh():
    log = io.StringIO()
    p = ProgressPrinter("prune", stream=log)
    feed(p, n=20)
    feed(p, n=20)
    assert len(log.getvalue().splitlines()) == 2 * 12


def test_a_sweep_writes_no_carriage_return_into_a_log(capsys):
    code, out, err = run_cli(capsys, "sweep", "--model", "mlp", "--dataset", "moons", "--methods", "wt",
                             "--ratios", "0.5,0.2")
    assert code == 0 and "wt" in out
    assert "\r" not in err and err.count("\n") <= 20 and "sweep 100.0%" in err


def test_a_warning_handed_to_progress_too_prints_once():
    log = io.StringIO()
    warning_line("checkpoint x set aside as x.corrupt", file=log)
    printer = ProgressPrinter("prepare", stream=log)
    printer(0.0, "checkpoint x set aside as x.corrupt")  # the engine tells the app's progress area as well
    printer(0.0, "forward pass over S (152 points)")
    assert log.getvalue().splitlines() == ["warning: checkpoint x set aside as x.corrupt",
                                           "prepare: forward pass over S (152 points)"]
