"""BN (+ scale, bias, comparison constant) followed by a sign, folded into integer thresholds.

The oracle is independent of the code under test: the BatchNorm value at an integer is evaluated
with 100-digit decimals from the float32 parameters, and its sign is compared with what the
integer threshold gives at tau - 1, tau, tau + 1 and across the accumulator range.
"""

from decimal import Decimal, getcontext

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from edge_sdk.ir import layers as L
from edge_sdk.passes.affine_forms import channel_forms
from edge_sdk.thresholds import apply_threshold, solve_threshold

getcontext().prec = 100

# 0 or |v| >= 1e-6: keeps every non-tie value far above the oracle's 1e-80 tie cut-off
f32 = st.floats(-50, 50, width=32, allow_nan=False, allow_infinity=False).filter(
    lambda v: v == 0 or abs(v) >= 1e-6
)
small = st.integers(-12, 12).map(lambda v: np.float32(v / 4))  # values that make exact ties


def bn_value(x: int, gamma, beta, mean, var, eps) -> Decimal:
    v = Decimal(float(np.float32(np.float32(var) + np.float32(eps))))
    return Decimal(float(gamma)) * (Decimal(x) - Decimal(float(mean))) / v.sqrt() + Decimal(
        float(beta)
    )


def expected(value: Decimal, mode: str) -> int:
    if abs(value) < Decimal("1e-80"):  # exact tie (the parameters make it exactly 0)
        value = Decimal(0)
    if mode == "sign":
        return (value > 0) - (value < 0)
    if mode == "ge0":
        return 1 if value >= 0 else -1
    return 1 if value > 0 else -1


def check(gamma, beta, mean, var, eps, mode, lo, hi):
    op = L.BatchNorm(*(np.array([v], np.float32) for v in (gamma, beta, mean, var)), eps)
    (form,) = channel_forms([op], 1)
    try:
        t = solve_threshold(form, mode, lo, hi)
    except ValueError:
        # only a channel that is constant 0 under Sign may be refused
        assert mode == "sign" and gamma == 0 and beta == 0
        return
    xs = sorted({x for x in (t.tau - 1, t.tau, t.tau + 1, lo, hi) if lo <= x <= hi})
    got = apply_threshold(np.array(xs, np.int64).reshape(-1, 1), [t.tau], [t.flip], [t.zero])
    want = [expected(bn_value(x, gamma, beta, mean, var, eps), mode) for x in xs]
    assert got[:, 0].tolist() == want, (t, xs)


@settings(max_examples=300)
@given(f32, f32, f32, st.floats(1 / 1024, 100, width=32), st.sampled_from(["sign", "ge0", "gt0"]),
       st.integers(-300, 0), st.integers(0, 300))
def test_threshold_random_params(gamma, beta, mean, var, mode, lo, hi):
    check(gamma, beta, mean, var, 1e-5, mode, lo, hi)


@settings(max_examples=300)
@given(small, small, st.integers(-20, 20), st.sampled_from([0.75, 3.75, 0.5]),
       st.sampled_from(["sign", "ge0", "gt0"]))
def test_threshold_exact_ties(gamma, beta, mean, var, mode):
    # var + eps is exactly 1 or 4 or 0.75, so gamma*(x-mean)/sqrt(.)+beta hits 0 at integers
    eps = 0.25
    assume(float(np.float32(var) + np.float32(eps)) in (1.0, 4.0) or mode != "sign")
    check(gamma, beta, np.float32(mean), var, eps, mode, -40, 40)


def test_negative_gamma_flips_direction():
    op = L.BatchNorm(np.array([-2.0], np.float32), np.array([1.0], np.float32),
                     np.array([3.0], np.float32), np.array([0.75], np.float32), 0.25)
    (form,) = channel_forms([op], 1)
    t = solve_threshold(form, "sign", -10, 10)
    # -2(x-3)+1 > 0  <=>  x < 3.5  <=> x <= 3
    assert (t.tau, t.flip, t.zero) == (3, True, False)


def test_tie_gives_zero_exactly_at_one_value():
    op = L.BatchNorm(np.array([1.0], np.float32), np.array([0.0], np.float32),
                     np.array([5.0], np.float32), np.array([0.75], np.float32), 0.25)
    (form,) = channel_forms([op], 1)
    t = solve_threshold(form, "sign", -10, 10)
    out = apply_threshold(np.arange(3, 8).reshape(-1, 1), [t.tau], [t.flip], [t.zero])
    assert out[:, 0].tolist() == [-1, -1, 0, 1, 1]


def test_scale_bias_and_bn_compose_exactly():
    # y = BN(0.5 * x + 0.25) with var + eps = 4: 3 * ((0.5x + 0.25) - 1) / 2 - 0.75 ; zero at x=2.5
    ops = [L.Mul(np.array([0.5], np.float32)), L.Add(np.array([0.25], np.float32)),
           L.BatchNorm(np.array([3.0], np.float32), np.array([-0.75], np.float32),
                       np.array([1.0], np.float32), np.array([3.75], np.float32), 0.25)]
    (form,) = channel_forms(ops, 1)
    t = solve_threshold(form, "ge0", -10, 10)
    assert (t.tau, t.flip) == (3, False)


def test_constant_zero_channel_is_refused():
    op = L.Mul(np.array([0.0], np.float32))
    (form,) = channel_forms([op], 1)
    with pytest.raises(ValueError, match="constant 0"):
        solve_threshold(form, "sign", -5, 5)
    assert solve_threshold(form, "ge0", -5, 5).tau == -5  # 0 >= 0 everywhere: always +1
