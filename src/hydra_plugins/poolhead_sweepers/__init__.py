"""Hydra finds sweepers only in the hydra_plugins namespace: these register poolhead's (`hydra/sweeper=halving`,
`hparams_search=stsb_optuna`); the code is in poolhead.halving and poolhead.optuna_sweep."""

from hydra.plugins.sweeper import Sweeper

from poolhead.halving import HalvingSweep
from poolhead.optuna_sweep import OptunaSweep


class HalvingSweeper(HalvingSweep, Sweeper):
    """Successive halving over a grid (poolhead.halving)."""


class OptunaSweeper(OptunaSweep, Sweeper):
    """An Optuna (>= 4) search with pruning at rungs (poolhead.optuna_sweep)."""
