"""The engine-neutral floor: everything a run of the tile tables needs except an engine.

Settings (:mod:`.settings`), paths (:mod:`.locations`), partition keys (:mod:`.keys`), the
slide registry (:mod:`.registry`), the slide store (:mod:`.slides`), the table store with
provenance (:mod:`.tables`), one build step per table (:mod:`.steps`) and the plans that say
which tables are missing or out of date (:mod:`.plans`). Nothing here imports Dagster: the
Dagster assets, a Ray backfill and a command line all build the same tables through it.
"""
