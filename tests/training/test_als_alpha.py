"""The trainer's choice of the ALS confidence scale (train.als_alphas) on its holdout."""


from recsys.evaluation import evaluate_variants
from recsys.models import ALSModel
from tests.holdout import holdout
from training import train as T
from training.blend_search import BlendScorer
from training.config import load_config

ALPHAS = [0.5, 10.0, 80.0]


def config_with(alphas):
    return load_config(None, {"als": {"factors": 16, "iterations": 6},
                              "train": {"max_eval_queries": 400, "als_alphas": alphas}})


def test_the_alpha_whose_als_alone_scores_best_on_next_best_is_kept(planted_inter):
    config = config_with(ALPHAS)
    h = holdout(planted_inter, config, als_iterations=4)
    als, alpha = T.choose_als_alpha(planted_inter, config, h.data, h.models, h.meta, 10, 4)

    scores = {}
    for a in [config["als"]["alpha"]] + [x for x in ALPHAS if x != config["als"]["alpha"]]:
        m = ALSModel(**dict(config["als"], alpha=a)).fit(h.models[0], iterations=4)
        res = evaluate_variants(BlendScorer(h.recommender(als=m), [(1.0,)], ("als",)), h.data,
                                10)[(1.0,)]
        scores[a] = res["next_best"]["ndcg@10"]
    assert len(set(scores.values())) > 1  # the alphas do make a difference here
    assert alpha == max(scores, key=scores.get)  # first of the best on ties: dicts keep order
    assert als.alpha == alpha


def test_no_alphas_or_no_next_best_queries_keep_the_configured_alpha(planted_inter):
    for alphas in ([], [10.0]):
        config = config_with(alphas)
        h = holdout(planted_inter, config, als_iterations=2)
        als, alpha = T.choose_als_alpha(planted_inter, config, h.data, h.models, h.meta, 10, 2)
        assert alpha == 10.0 and als is h.models[3]


def test_fit_product_refits_with_the_chosen_alpha_and_leaves_the_config_alone(planted_inter):
    config = config_with(ALPHAS)
    product = T.fit_product(planted_inter, config)
    assert product.als_alpha in ALPHAS
    assert product.models[3].alpha == product.als_alpha
    assert config["als"]["alpha"] == 10.0  # the caller's config is not modified
