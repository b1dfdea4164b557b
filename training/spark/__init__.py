"""The Spark engine of ``xsell train --engine spark``.

The data-proportional work runs in Spark (reading and validating order lines,
the data report, vocabularies, the temporal split, co-purchase pair counts,
ALS, EASE's Gram matrix, the holdout queries); the driver receives only
aggregates the shipped model holds anyway (vocabularies, the customer x item
history, neighbour lists, factors, the Gram matrix) and a seeded sample of
holdout queries. Model selection, the gate and the version written are the
local engine's own code (training/train.py), so the service cannot tell the
two engines' versions apart. docs/SPARK.md describes running it on a cluster.
"""
