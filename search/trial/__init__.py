"""One member's trial on a worker: making a child, training it, measuring it.

:mod:`.child` makes a child (morphs, identity-BN calibration, preservation check); :mod:`.worker`
runs a job (seed or child) and reports each epoch; :mod:`.train` is the training loop,
:mod:`.distill` the parent-as-teacher loss, :mod:`.latency` the measured forward pass,
:mod:`.jobs` builds jobs from the config, :mod:`.hold` keeps idle Tune slots warm. Nothing here
imports Ray or Optuna.
"""
