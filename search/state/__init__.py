"""The run's state: its directory, its write-ahead state file, the records and the population.

Everything a run keeps on disk between sessions and the frozen records that cross the driver /
worker / leaderboard boundaries (:mod:`.records`: proposals, jobs, trial results), the population
(:mod:`.population`), atomic files and path confinement (:mod:`.fsutil`), the run directory's
layout (:mod:`.rundir`) and the write-ahead run state with its lock (:mod:`.runstate`).
Imports nothing of the other wings.
"""
