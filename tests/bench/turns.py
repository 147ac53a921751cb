"""Interleaved measurement of several trials: each advanced a few iterations in turn, so
machine noise hits every arm alike."""
import time


def advance_in_turns(trials, turns: int, per_turn: int):
    """Advance every trial (name -> started Trial) ``per_turn`` iterations, ``turns`` times
    round; returns the seconds each spent."""
    spent = {name: 0.0 for name in trials}
    for _ in range(turns):
        for name, trial in trials.items():
            t0 = time.perf_counter()
            trial.advance(trial.iteration + per_turn)
            spent[name] += time.perf_counter() - t0
    return spent
