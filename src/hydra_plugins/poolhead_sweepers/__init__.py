"""Hydra finds sweepers only in the hydra_plugins namespace: these register poolhead's (`hydra/sweeper=halving`,
`hparams_search=stsb_optuna`); the code is in poolhead.halving and poolhead.optuna_sweep."""

from hydra.plugins.sweeper import Sweeper

from poolhead.halving import HalvingSweep


class HalvingSweeper(HalvingSweep, Sweeper):
    """Successive halving over a grid (poolhead.halving)."""
