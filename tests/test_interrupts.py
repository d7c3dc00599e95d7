"""Held signals: none lost, none held where nothing would raise them."""

import os
import signal
import threading

import pytest

from aeff import interrupts
from aeff.errors import TrialInterrupted
from aeff.interrupts import interrupts_held, interrupts_raised


def test_a_hold_within_another_passes_its_signals_on():
    """A group's launch holds signals while a trial's final record, itself held, is written:
    the launch must still see the signal, or the group trains on."""
    with interrupts_raised(), interrupts_held() as outer:
        with interrupts_held() as inner:
            os.kill(os.getpid(), signal.SIGTERM)
        assert inner == [signal.SIGTERM]
        assert outer == [signal.SIGTERM]


def test_a_signal_held_when_the_block_raises_is_raised_in_its_place():
    with interrupts_raised(), pytest.raises(TrialInterrupted) as stopped, interrupts_held():
        os.kill(os.getpid(), signal.SIGINT)
        raise RuntimeError("the device failed")
    assert stopped.value.signum == signal.SIGINT
    assert str(stopped.value.__cause__) == "the device failed"
    with interrupts_raised(), pytest.raises(RuntimeError), interrupts_held():
        raise RuntimeError("no signal: the error itself")


def test_outside_interrupts_raised_a_hold_leaves_signals_to_their_handler():
    seen = []
    previous = signal.signal(signal.SIGHUP, lambda signum, frame: seen.append(signum))
    try:
        with interrupts_held() as held:  # a library call of run_trial
            os.kill(os.getpid(), signal.SIGHUP)
        assert seen == [signal.SIGHUP] and held == []
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_a_hold_in_another_thread_installs_nothing():
    errors = []

    def hold() -> None:
        try:
            with interrupts_held() as held:
                assert held == []
        except Exception as error:  # signal.signal outside the main thread: ValueError
            errors.append(error)

    with interrupts_raised():
        thread = threading.Thread(target=hold)
        thread.start()
        thread.join()
    assert errors == []


def test_a_second_signal_does_not_cut_the_first_ones_way_out_short():
    """A Ctrl-C reaches a sweep's worker twice (from the terminal, and passed on by the
    sweep's parent): the second is noted, and the first one's way out runs to its end."""
    ways_out = []
    with pytest.raises(TrialInterrupted) as stopped, interrupts_raised():
        try:
            os.kill(os.getpid(), signal.SIGINT)
        except TrialInterrupted:
            os.kill(os.getpid(), signal.SIGINT)  # before the way out holds signals
            ways_out.append("last row and checkpoint")
            raise
    assert stopped.value.signum == signal.SIGINT and ways_out == ["last row and checkpoint"]


def test_a_process_a_signal_stopped_remembers_it_until_a_new_sweep():
    interrupts.forget_received()
    with pytest.raises(TrialInterrupted), interrupts_raised():
        os.kill(os.getpid(), signal.SIGTERM)
    assert interrupts.received() == signal.SIGTERM  # its next job is not started
    interrupts.forget_received()
    assert interrupts.received() is None
