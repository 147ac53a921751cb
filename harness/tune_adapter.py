"""Every use of a Ray Tune or Optuna internal, in one place (imports Ray).

ganbench uses Ray Tune's and Optuna's public APIs everywhere else. Two things need their
private attributes, and both are here:

- a restored ``Tuner`` keeps the callbacks pickled with the driver that first ran the
  experiment; progress lines must go to the current driver, so the restored run config's
  callbacks are replaced (``Tuner._local_tuner._run_config``);
- Tune's ``OptunaSearch`` tells Optuna that a trial ASHA stopped early is COMPLETE; ganbench
  tells it PRUNED (and FAIL for a trial that raised), which needs the searcher's map of
  Tune trials to Optuna trials (``_ot_trials``, ``_completed_trials``, ``_ot_study``).

Upgrading Ray or Optuna is a one-file job: run ``tests/test_tune_adapter.py`` against the
new version (it probes every internal below), fix what it names, then add the version to
``TESTED``. An untested version is refused with a message saying so, unless
``GANBENCH_ALLOW_UNTESTED_RAY=1`` (then a warning).
"""
from __future__ import annotations

import logging
import os
import warnings
from typing import Any, List

# No usage reporting (nothing phones home); Tune's table output off (ganbench prints its
# own study progress); tiny pointer checkpoints need no snapshot warnings.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")

import optuna  # noqa: E402
import ray  # noqa: E402
from optuna.trial import TrialState  # noqa: E402
from ray import tune  # noqa: E402
from ray.tune.search.optuna import OptunaSearch  # noqa: E402

from harness.errors import UntestedVersionError  # noqa: E402

# package -> the "major.minor" (Ray) or "major" (Optuna) releases this adapter was tested on
TESTED = {"ray": ("2.60",), "optuna": ("5",)}
ALLOW_ENV = "GANBENCH_ALLOW_UNTESTED_RAY"

__all__ = ["PruningAwareOptunaSearch", "TESTED", "UntestedVersionError", "check_versions", "missing_internals",
           "set_restored_callbacks", "tune"]


def _release(package: str, version: str) -> str:
    parts = version.split(".")
    return ".".join(parts[:2]) if package == "ray" else parts[0]


def check_versions(versions: Any = None) -> None:
    """Refuse (or, with GANBENCH_ALLOW_UNTESTED_RAY=1, warn about) a Ray or Optuna release
    this adapter was not tested on."""
    versions = versions or {"ray": ray.__version__, "optuna": optuna.__version__}
    for package, version in versions.items():
        if _release(package, version) in TESTED[package]:
            continue
        message = (f"{package} {version} is not a version ganbench was tested with ({package} "
                   f"{' / '.join(TESTED[package])}); ganbench uses {package} internals that change between "
                   f"releases, all in harness/tune_adapter.py: run tests/test_tune_adapter.py with this version, "
                   f"fix what it names, and add the release to TESTED there (or set {ALLOW_ENV}=1 to try anyway)")
        if os.environ.get(ALLOW_ENV) == "1":
            warnings.warn(message, RuntimeWarning, stacklevel=2)
        else:
            raise UntestedVersionError(message)


def set_restored_callbacks(tuner: Any, callbacks: List[Any]) -> None:
    """Give a restored Tuner this driver's callbacks (Tune restores the pickled ones)."""
    try:
        tuner._local_tuner._run_config.callbacks = callbacks
    except AttributeError as err:
        raise UntestedVersionError(f"ray {ray.__version__}: a restored Tuner no longer has "
                                   f"_local_tuner._run_config ({err}); update harness/tune_adapter.py") from None


class PruningAwareOptunaSearch(OptunaSearch):
    """Tells Optuna that a trial ASHA stopped early was PRUNED (Tune's OptunaSearch records
    it COMPLETE with its last value), so TPE and the Optuna dashboard see it as the partial
    run it is (a trial still ``running`` in its last result was stopped); a trial that
    raised is told FAIL."""

    def on_trial_complete(self, trial_id, result=None, error=False):
        status = (result or {}).get("status")
        if (result and not error and status in ("running", "failed")
                and trial_id in self._ot_trials and trial_id not in self._completed_trials):
            state = TrialState.PRUNED if status == "running" else TrialState.FAIL
            try:
                self._ot_study.tell(self._ot_trials[trial_id], state=state)
            except Exception as exc:  # same tolerance as the parent class
                logging.getLogger(__name__).warning(exc)
            self._completed_trials.add(trial_id)
            return
        super().on_trial_complete(trial_id, result=result, error=error)


def missing_internals() -> List[str]:
    """The internals above that the installed Ray/Optuna lack (empty when all is well);
    builds a searcher and a Tuner without starting Ray."""
    import tempfile

    missing = []
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    searcher = OptunaSearch(space=lambda trial: {"x": trial.suggest_float("x", 0.0, 1.0)}, metric="objective",
                            mode="min")
    searcher.set_search_properties(None, None, {})
    for attr in ("_ot_trials", "_completed_trials", "_ot_study"):
        if not hasattr(searcher, attr):
            missing.append(f"OptunaSearch.{attr}")
    if not hasattr(OptunaSearch, "on_trial_complete"):
        missing.append("OptunaSearch.on_trial_complete")
    with tempfile.TemporaryDirectory() as storage:
        tuner = tune.Tuner(lambda config: None, run_config=tune.RunConfig(name="probe", storage_path=storage))
    local = getattr(tuner, "_local_tuner", None)
    if local is None:
        missing.append("Tuner._local_tuner")
    elif not hasattr(local, "_run_config"):
        missing.append("Tuner._local_tuner._run_config")
    return missing
