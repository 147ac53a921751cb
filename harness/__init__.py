"""ganbench's engine: how a trial is specified, run, measured, stored and reported."""

__version__ = "0.1.0"
