"""EASE's two weightings (recsys/models/ease.py): order-size damping in X'X and the
popularity penalty on candidates, and the trainer's choice of them on its holdout."""

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.models.ease import EASEModel, dense_weights, size_weights
from tests.recsys.test_ease import _matrix

# 4 orders of sizes 2, 2, 3 and 4 over 4 items.
ORDERS = sp.csr_matrix(np.array([[1, 1, 0, 0],
                                 [0, 1, 1, 0],
                                 [1, 0, 1, 1],
                                 [1, 1, 1, 1]], dtype=np.float32))


def test_size_damping_is_x_transpose_w_x_with_the_trace_kept():
    dense = ORDERS.toarray().astype(np.float64)
    sizes = dense.sum(1)
    decay = np.array([0.5, 1.0, 2.0, 0.5])
    for base in (np.ones(4), decay):
        w = base * sizes ** -0.5
        w *= (base * sizes).sum() / (w * sizes).sum()  # by hand: the trace is unchanged
        keep, g = EASEModel(min_buyers=1, size_exponent=0.5).gram(
            ORDERS, ORDERS, None if base is not decay else decay)
        np.testing.assert_allclose(g, dense.T @ np.diag(w) @ dense, rtol=1e-6)
        assert np.trace(g) == pytest.approx((base * sizes).sum())
        # The damping weighs a small order's pairs more than a large one's.
        assert w[0] / base[0] > w[3] / base[3]
    # Exponent 0 is no weighting at all.
    assert size_weights(ORDERS, None, 0.0) is None
    assert size_weights(ORDERS, decay, 0.0) is decay


def _fit(beta=0.0, dense_items=5000, k=2):
    return EASEModel(lam=1.0, k=k, min_buyers=1, dense_items=dense_items,
                     popularity_exponent=beta).fit(CUSTOMERS, ORDERS)


# Buyers per item: 1, 2, 3, 1 (customers x items).
CUSTOMERS = sp.csr_matrix(np.array([[1, 1, 1, 0],
                                    [0, 1, 1, 1],
                                    [0, 0, 1, 0]], dtype=np.float32))


@pytest.mark.parametrize("dense_items", [5000, 0])  # dense store, top-k CSR
def test_popularity_penalty_divides_each_candidate_column_by_its_buyers(dense_items):
    plain = _matrix(_fit(0.0, dense_items).similarity_)
    penalised = _fit(0.5, dense_items)
    buyers = np.array([1.0, 2.0, 3.0, 1.0])
    np.testing.assert_allclose(_matrix(penalised.similarity_), plain * buyers[None, :] ** -0.5,
                               rtol=1e-6)
    # Derived from the unpenalised model without an inverse: the very same weights.
    derived = _fit(0.0, dense_items).with_popularity_exponent(0.5, CUSTOMERS)
    np.testing.assert_array_equal(_matrix(derived.similarity_), _matrix(penalised.similarity_))
    assert derived.popularity_exponent == 0.5
    with pytest.raises(ValueError, match="unpenalised"):
        penalised.with_popularity_exponent(0.2, CUSTOMERS)
    # The plain weights are those of EASE's closed form (the penalty changes nothing else).
    if dense_items:
        b = dense_weights(ORDERS.toarray().T.astype(np.float64) @ ORDERS.toarray(), 1.0)
        np.fill_diagonal(b, 0.0)
        np.testing.assert_allclose(plain, b, rtol=1e-5, atol=1e-6)
