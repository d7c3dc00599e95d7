"""Signals as a flag: noted while a trial trains, raised where the loop looks, none lost."""

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
