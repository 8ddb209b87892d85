"""Hydra finds sweepers only in the hydra_plugins namespace: these register poolhead's
(`hydra/sweeper=halving`, `hparams_search=stsb_optuna`); the code is in poolhead.sweep.halving and
poolhead.sweep.optuna_sweep. Hydra imports this module before it composes a config, so poolhead's config
resolvers are registered here too."""

from hydra.plugins.sweeper import Sweeper

from poolhead.resolvers import register
from poolhead.sweep.halving import HalvingSweeper  # noqa: F401 - registered here by its __module__
from poolhead.sweep.optuna_sweep import OptunaSweep


class OptunaSweeper(OptunaSweep, Sweeper):
    """An Optuna (>= 4) search with pruning at rungs (poolhead.sweep.optuna_sweep)."""


register()  # Hydra imports this module when it scans its plugins, before it composes any config
