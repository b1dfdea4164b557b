"""Planted orders split as the trainer splits them, with the models fitted on the past."""

from __future__ import annotations

from dataclasses import dataclass

from recsys.evaluation import build_eval_data, split, split_interactions
from recsys.recommender import Recommender
from recsys.rules import build_item_meta
from training import train as T


@dataclass
class Holdout:
    inter: object  # all interactions
    train_part: object  # the training period
    data: object  # the holdout queries (recsys.evaluation.EvalData)
    models: tuple  # (history, popularity, co-purchase, ALS) fitted on train_part
    meta: object

    def recommender(self, ease=None, als=None) -> Recommender:
        hist, pop, cp, fitted_als = self.models
        return Recommender(self.inter.items, self.inter.customers, hist, pop, cp,
                           fitted_als if als is None else als, self.meta, ease=ease)


def holdout(inter, config: dict, max_queries: int = 400,
            als_iterations: int | None = None) -> Holdout:
    """The last 15% of orders as the holdout (as ``xsell train`` does) and the models of
    ``config`` fitted on the rest."""
    train_part, test_part = split_interactions(inter, split(inter, test_fraction=0.15))
    data = build_eval_data(train_part, test_part, max_queries=max_queries)
    models = T.fit_models(train_part, config, T._null_progress_factory,
                          customer_items=data.train_customer_items,
                          als_iterations=als_iterations)
    return Holdout(inter, train_part, data, models, build_item_meta(inter.items, None, None))
