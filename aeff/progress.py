"""A one-line live progress display, shown only when stdout is a terminal."""

import sys
import time


class Progress:
    def __init__(self, budget_sec: float, refresh_sec: float = 0.25) -> None:
        self.enabled = sys.stdout.isatty()
        self.budget_sec = budget_sec
        self.refresh_sec = refresh_sec
        self._last_refresh = 0.0
        self._shown = False

    def update(self, global_step: int, submission_time: float) -> None:
        now = time.monotonic()
        if not self.enabled or now - self._last_refresh < self.refresh_sec:
            return
        self._last_refresh = now
        share = min(submission_time / self.budget_sec, 1.0)
        bar = "#" * int(share * 30)
        sys.stdout.write(
            f"\r\033[K[{bar:<30}] {share:4.0%} of budget | step {global_step} | "
            f"{submission_time:.1f}s"
        )
        sys.stdout.flush()
        self._shown = True

    def clear(self) -> None:
        """Erase the line so log lines print cleanly."""
        if self._shown:
            sys.stdout.write("\r\033[K")
            sys.stdout.flush()
            self._shown = False
