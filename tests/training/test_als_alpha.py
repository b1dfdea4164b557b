"""The trainer's choice of the ALS confidence scale (train.als_alphas) on its holdout."""

import pytest

from recsys.data import read_orders
from recsys.evaluation import build_eval_data, evaluate_variants, split, split_interactions
from recsys.models import ALSModel
from recsys.recommender import Recommender
from recsys.rules import build_item_meta
from training import train as T
from training.blend_search import BlendScorer
from training.config import load_config

ALPHAS = [0.5, 10.0, 80.0]


@pytest.fixture(scope="module")
def planted_inter(planted):
    path, _ = planted
    inter, _ = read_orders(path)
    return inter


def config_with(alphas):
    return load_config(None, {"als": {"factors": 16, "iterations": 6},
                              "train": {"max_eval_queries": 400, "als_alphas": alphas}})


def test_the_alpha_whose_als_alone_scores_best_on_next_best_is_kept(planted_inter):
    config = config_with(ALPHAS)
    s = split(planted_inter, test_fraction=0.15)
    train_part, test_part = split_interactions(planted_inter, s)
    data = build_eval_data(train_part, test_part, max_queries=400)
    models = T.fit_models(train_part, config, T._null_progress_factory,
                          customer_items=data.train_customer_items, als_iterations=4)
    meta = build_item_meta(planted_inter.items, None, None)
    als, alpha = T.choose_als_alpha(planted_inter, config, data, models, meta, 10, 4)

    hist, pop, cp, _ = models
    scores = {}
    for a in [config["als"]["alpha"]] + [x for x in ALPHAS if x != config["als"]["alpha"]]:
        m = ALSModel(**dict(config["als"], alpha=a)).fit(hist, iterations=4)
        rec = Recommender(planted_inter.items, planted_inter.customers, hist, pop, cp, m, meta)
        res = evaluate_variants(BlendScorer(rec, [(1.0,)], ("als",)), data, 10)[(1.0,)]
        scores[a] = res["next_best"]["ndcg@10"]
    assert len(set(scores.values())) > 1  # the alphas do make a difference here
    assert alpha == max(scores, key=scores.get)  # first of the best on ties: dicts keep order
    assert als.alpha == alpha


def test_no_alphas_or_no_next_best_queries_keep_the_configured_alpha(planted_inter):
    for alphas in ([], [10.0]):
        config = config_with(alphas)
        s = split(planted_inter, test_fraction=0.15)
        train_part, test_part = split_interactions(planted_inter, s)
        data = build_eval_data(train_part, test_part, max_queries=400)
        models = T.fit_models(train_part, config, T._null_progress_factory,
                              customer_items=data.train_customer_items, als_iterations=2)
        meta = build_item_meta(planted_inter.items, None, None)
        als, alpha = T.choose_als_alpha(planted_inter, config, data, models, meta, 10, 2)
        assert alpha == 10.0 and als is models[3]


def test_fit_product_refits_with_the_chosen_alpha_and_leaves_the_config_alone(planted_inter):
    config = config_with(ALPHAS)
    product = T.fit_product(planted_inter, config)
    assert product.als_alpha in ALPHAS
    assert product.models[3].alpha == product.als_alpha
    assert config["als"]["alpha"] == 10.0  # the caller's config is not modified
