"""EASE and its dropout variants (DLAE, EDLAE) against direct solves of their objectives."""

import itertools

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.models.ease import EASEModel, dense_weights

# 5 orders x 4 items, every item in at least two orders.
X = np.array([[1, 1, 0, 0],
              [1, 1, 1, 0],
              [0, 1, 1, 1],
              [1, 0, 1, 1],
              [1, 1, 0, 1]], dtype=np.float64)
G = X.T @ X
# The config lists fit_ease turns into settings, and the large-catalogue tail's size
# (not EASEModel arguments).
SETTING_LISTS = ("lambdas", "dropouts", "enabled", "half_lives", "size_exponents",
                 "popularity_exponents", "tail_neighbours", "head_k")


def _matrix(sim) -> np.ndarray:
    """EASE weights as a dense array, whichever way the model stores them."""
    return sim.toarray() if sp.issparse(sim) else np.asarray(sim)


def test_small_catalogues_keep_every_weight_larger_ones_the_top_k():
    """Up to ``dense_items`` items the model is the dense matrix (every weight, zero rows
    for items under min_buyers); above, the ``k`` largest weights of each row (CSR)."""
    rng = np.random.default_rng(3)
    bought = rng.random((400, 30)) < 0.3
    bought[:, 29] = False  # never bought: kept out of EASE
    orders = sp.csr_matrix(bought.astype(np.float32))
    dense = EASEModel(lam=5.0, k=3).fit(orders, orders)
    assert isinstance(dense.similarity_, np.ndarray) and dense.similarity_.dtype == np.float32
    keep = np.arange(29)
    want = dense_weights((orders[:, keep].T @ orders[:, keep]).toarray().astype(np.float64), 5.0)
    np.fill_diagonal(want, 0.0)
    np.testing.assert_allclose(dense.similarity_[np.ix_(keep, keep)], want, rtol=1e-5, atol=1e-7)
    assert not dense.similarity_[29].any() and not dense.similarity_[:, 29].any()
    assert (dense.similarity_ != 0).sum(axis=1).max() > 3  # more than k: nothing cut

    cut = EASEModel(lam=5.0, k=3, dense_items=29).fit(orders, orders)
    assert sp.issparse(cut.similarity_)
    assert np.diff(cut.similarity_.indptr).max() == 3
    top = np.sort(np.abs(want), axis=1)[:, -3:]
    np.testing.assert_allclose(np.sort(np.abs(cut.similarity_[keep].toarray()), axis=1)[:, -3:],
                               top, rtol=1e-5)
    rows = sp.csr_matrix(orders[:5])
    np.testing.assert_allclose(dense.score_histories(rows), rows @ dense.similarity_)


def constrained_columns(g, reg):
    """diag(B) = 0 solved column by column: b_{-j,j} = (G_{-j,-j} + Reg_{-j})^-1 G_{-j,j}."""
    n = g.shape[0]
    b = np.zeros((n, n))
    for j in range(n):
        rest = [i for i in range(n) if i != j]
        a = g[np.ix_(rest, rest)] + np.diag(reg[rest])
        b[rest, j] = np.linalg.solve(a, g[rest, j])
    return b


def test_ease_closed_form_is_the_zero_diagonal_least_squares_solution():
    b = dense_weights(G, lam=2.0)
    np.testing.assert_allclose(b, constrained_columns(G, np.full(4, 2.0)), atol=1e-10)
    assert np.all(np.diag(b) == 0)


@pytest.mark.parametrize("p", [0.25, 0.5])
def test_edlae_is_ease_with_the_dropout_regulariser_and_a_zero_diagonal(p):
    b = dense_weights(G, lam=1.0, dropout=p, zero_diagonal=True)
    reg = 1.0 + p / (1 - p) * np.diag(G)
    np.testing.assert_allclose(b, constrained_columns(G, reg), atol=1e-10)
    assert np.all(np.diag(b) == 0)
    # The dropout penalty is not a no-op: popular items are penalised more than rare ones.
    assert not np.allclose(b, dense_weights(G, lam=1.0))


def test_dlae_solves_its_normal_equations():
    p, lam = 0.5, 1.0
    b = dense_weights(G, lam=lam, dropout=p, zero_diagonal=False)
    reg = np.diag(lam + p / (1 - p) * np.diag(G))
    np.testing.assert_allclose((G + reg) @ b, G, atol=1e-10)
    np.testing.assert_allclose(b, np.linalg.solve(G + reg, G), atol=1e-10)
    assert np.all(np.diag(b) != 0)  # not constrained


def test_dlae_minimises_the_expected_dropout_loss_enumerated_exactly():
    # E over every input-dropout mask (each entry dropped with probability p, the kept
    # ones scaled by 1/(1-p)) of ||X - (X*M/(1-p)) B||^2, plus lam ||B||^2: its gradient
    # vanishes at the DLAE closed form (Steck 2020, eq. for the dropout regulariser).
    x = X[:3, :3]
    p, lam = 0.25, 0.5
    b = dense_weights(x.T @ x, lam=lam, dropout=p, zero_diagonal=False)
    grad = 2 * lam * b
    for bits in itertools.product((0, 1), repeat=x.size):
        m = np.array(bits, dtype=np.float64).reshape(x.shape)
        weight = np.prod(np.where(m == 1, 1 - p, p))
        z = x * m / (1 - p)
        grad += weight * (-2 * z.T @ (x - z @ b))
    np.testing.assert_allclose(grad, 0.0, atol=1e-10)
    # ... and the plain EASE weights do not.
    assert not np.allclose(b, dense_weights(x.T @ x, lam=lam, zero_diagonal=False))


def test_p_zero_is_ease_and_the_fitted_models_store_no_diagonal():
    orders = sp.csr_matrix(X.astype(np.float32))
    plain = EASEModel(lam=2.0, k=10).fit(orders, orders)
    zero = EASEModel(lam=2.0, k=10, dropout=0.0).fit(orders, orders)
    np.testing.assert_array_equal(_matrix(plain.similarity_), _matrix(zero.similarity_))
    g = np.linalg.inv(G + 2.0 * np.eye(4))
    expected = -g / np.diag(g)
    np.fill_diagonal(expected, 0.0)
    np.testing.assert_allclose(_matrix(plain.similarity_), expected, rtol=1e-5, atol=1e-6)
    for zero_diagonal in (True, False):
        m = EASEModel(lam=1.0, k=10, dropout=0.5, zero_diagonal=zero_diagonal).fit(orders, orders)
        sim = _matrix(m.similarity_)
        assert np.all(np.diag(sim) == 0)
        dense = dense_weights(G, 1.0, 0.5, zero_diagonal)
        np.fill_diagonal(dense, 0.0)
        np.testing.assert_allclose(sim, dense, rtol=1e-5, atol=1e-6)


def test_dropout_out_of_range_is_refused():
    with pytest.raises(ValueError):
        dense_weights(G, 1.0, dropout=1.0)


def test_the_cholesky_inverse_equals_the_general_one_and_falls_back_when_not_spd():
    from recsys.models.ease import spd_inverse

    a = G + 2.0 * np.eye(4)
    np.testing.assert_allclose(spd_inverse(a), np.linalg.inv(a), rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(a, G + 2.0 * np.eye(4))  # the input is left alone
    indefinite = np.array([[1.0, 2.0], [2.0, 1.0]])
    np.testing.assert_allclose(spd_inverse(indefinite), np.linalg.inv(indefinite))
