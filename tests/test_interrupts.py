"""Signals by phase (`aeff.interrupts`): noted while a trial trains, raised where the loop
looks, none lost; an exit at once, recorded and said in one line, where nothing trains."""

import os
import signal

import pytest

from aeff import interrupts
from aeff.errors import TrialInterrupted
from aeff.interrupts import interrupts_noted


def test_a_signal_is_noted_and_raised_only_where_the_loop_looks():
    """A launch, a row or a checkpoint in progress is never cut short."""
    finished = []
    with interrupts_noted():
        os.kill(os.getpid(), signal.SIGTERM)
        finished.append("the launch")  # no exception between statements
        with pytest.raises(TrialInterrupted) as stopped:
            interrupts.check()
    assert finished == ["the launch"] and stopped.value.signum == signal.SIGTERM


def test_no_signal_no_interruption():
    with interrupts_noted():
        interrupts.check()


def test_the_first_of_several_signals_is_the_one_raised():
    """A Ctrl-C reaches a sweep's worker twice (from the terminal, and passed on by the
    sweep's parent): both are noted, and the first is the trial's ending."""
    with interrupts_noted():
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
        with pytest.raises(TrialInterrupted) as stopped:
            interrupts.check()
    assert stopped.value.signum == signal.SIGINT


def test_a_noted_signal_ends_with_its_block():
    with interrupts_noted():
        os.kill(os.getpid(), signal.SIGTERM)
    with interrupts_noted():
        interrupts.check()  # the next trial of the process starts clean


def test_outside_the_block_signals_keep_their_own_handling():
    seen = []
    previous = signal.signal(signal.SIGHUP, lambda signum, frame: seen.append(signum))
    try:
        with interrupts_noted():
            pass
        os.kill(os.getpid(), signal.SIGHUP)
        assert seen == [signal.SIGHUP]
        interrupts.check()
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_a_process_a_signal_stopped_remembers_it_until_a_new_sweep():
    interrupts.forget_received()
    with interrupts_noted():
        os.kill(os.getpid(), signal.SIGTERM)
    assert interrupts.received() == signal.SIGTERM  # its next job is not started
    interrupts.forget_received()
    assert interrupts.received() is None


class Exited(BaseException):
    """`os._exit`, made to return to the test."""


@pytest.fixture
def exits(monkeypatch):
    """The statuses the process would have exited with."""
    statuses = []

    def exit_(status):
        statuses.append(status)
        raise Exited

    monkeypatch.setattr(os, "_exit", exit_)
    return statuses


def test_the_innermost_phase_decides_and_a_sweep_says_what_is_left(exits, capsys):
    """A trial's preparation inside its noting block inside a sweep: the signal records,
    the sweep stops (its report) and says so, and the process exits 128 + signal."""
    done = []

    def stopped(signum):
        done.append(("sweep stopped", signum))
        return "the sweep's report is written."

    with interrupts.sweeping(stopped), interrupts_noted():
        with pytest.raises(Exited), interrupts.exiting("its records began", done.append):
            os.kill(os.getpid(), signal.SIGTERM)
        interrupts.check()  # the exit was the signal's ending: nothing is left noted
    assert done == [signal.SIGTERM, ("sweep stopped", signal.SIGTERM)]
    assert exits == [128 + signal.SIGTERM]
    assert capsys.readouterr().err == (
        "aeff: stopped by SIGTERM before its records began; the sweep's report is written.\n"
    )


def test_slurms_warning_while_a_trial_prepares_is_noted_not_an_exit(exits, monkeypatch):
    """SLURM's warning (submitit's USR2) is the trial's to stop at a checkpoint: a phase
    that exits at once does not take it."""
    monkeypatch.setenv("SUBMITIT_FOLDER", "/tmp/submitit")
    with interrupts_noted():
        with interrupts.exiting("its records began"):
            os.kill(os.getpid(), signal.SIGUSR2)
        with pytest.raises(TrialInterrupted) as stopped:
            interrupts.check()
    assert exits == [] and stopped.value.signum == signal.SIGUSR2
    assert interrupts.was_received(signal.SIGUSR2)


def test_after_its_phases_a_signal_meets_the_handler_it_met_before(exits):
    seen = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    try:
        with interrupts.exiting("the trial began"), interrupts_noted():
            pass
        os.kill(os.getpid(), signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert seen == [signal.SIGTERM] and exits == []
