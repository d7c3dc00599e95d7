"""The live progress line appears on a terminal only, and clears before log lines."""

import io

from aeff.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_line_on_a_terminal(monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr("sys.stdout", terminal)
    progress = Progress(budget_sec=60.0, refresh_sec=0.0)
    progress.update(global_step=120, submission_time=15.0)
    assert "25% of budget | step 120 | 15.0s" in terminal.getvalue()
    progress.clear()
    assert terminal.getvalue().endswith("\r\033[K")


def test_no_progress_line_in_a_file(monkeypatch):
    captured = io.StringIO()
    monkeypatch.setattr("sys.stdout", captured)
    progress = Progress(budget_sec=60.0, refresh_sec=0.0)
    progress.update(global_step=1, submission_time=1.0)
    progress.clear()
    assert captured.getvalue() == ""
