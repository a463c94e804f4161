"""Tests of scaling_law.py: fits that recover known laws, standard errors that mean what they
say, refusals, Chinchilla's compute-optimal allocation, and the measured frontier."""

import json

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from minillm.scaling_law import (Fit, chinchilla_law, fit_chinchilla, fit_power_law, frontier,
                                 optimal_d, optimal_n, power_law)

# The law the synthetic sweeps come from. E = 0.8 stands for the data's known entropy.
TRUTH = dict(E=0.8, A=40.0, alpha=0.5, B=300.0, beta=0.4)
POWER_TRUTH = dict(E=0.8, A=40.0, alpha=0.5)
SIGMA = 0.003  # nats: the noise of a held-out loss measured on ~1e5 tokens


def sweep(n_N=8, n_D=4):
    """N on a log grid 1e3..1e6 (1000×), D on one 1e5..6.4e6 (64×), every pair. -> N, D (n,)"""
    N, D = np.meshgrid(np.geomspace(1e3, 1e6, n_N), np.geomspace(1e5, 6.4e6, n_D))
    return N.ravel(), D.ravel()


def fitted_names(law, E):
    names = ["E", "A", "alpha"] + (["B", "beta"] if law == "chinchilla" else [])
    return names[1:] if E is not None else names


def fit_noisy(law, E, seed, n_N=10, n_D=5):
    """A fit to the law TRUTH plus Gaussian noise of SIGMA drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    N, D = sweep(n_N, n_D)
    if law == "power_law":
        N = np.geomspace(1e3, 1e6, n_N * n_D)
        return fit_power_law(N, power_law(N, **POWER_TRUTH) + rng.normal(0, SIGMA, N.size), E=E)
    return fit_chinchilla(N, D, chinchilla_law(N, D, **TRUTH) + rng.normal(0, SIGMA, N.size), E=E)


def test_the_laws_at_a_point_by_hand():
    # 100^(−0.5) = 0.1 and 10000^(−0.5) = 0.01: L = 1 + 40·0.1 + 300·0.01 = 8
    assert power_law(100, E=1.0, A=40.0, alpha=0.5) == pytest.approx(5.0, rel=1e-15)
    assert chinchilla_law(100, 10000, E=1.0, A=40.0, alpha=0.5, B=300.0, beta=0.5) == (
        pytest.approx(8.0, rel=1e-15))
    # vectorized: N (3, 1) and D (4,) broadcast to (3, 4)
    L = chinchilla_law(np.array([[1e3], [1e4], [1e5]]), np.geomspace(1e5, 1e7, 4), **TRUTH)
    assert L.shape == (3, 4)
    assert L[2, 1] == pytest.approx(chinchilla_law(1e5, np.geomspace(1e5, 1e7, 4)[1], **TRUTH))


# ----------------------------------------------------------------------------------------------
# Noiseless points: every parameter recovered


@pytest.mark.parametrize("E", [None, TRUTH["E"]])
def test_chinchilla_fit_recovers_noiseless_law(E):
    # the least the fits should need: N over 30× (7 values), D over 4× (3 values)
    N, D = [a.ravel() for a in np.meshgrid(np.geomspace(1e3, 3e4, 7), [1e5, 2e5, 4e5])]
    fit = fit_chinchilla(N, D, chinchilla_law(N, D, **TRUTH), E=E)
    for name in TRUTH:
        assert fit.params[name] == pytest.approx(TRUTH[name], rel=1e-7), name
    assert fit.rss < 1e-20
    assert (fit.n_points, fit.n_fitted, fit.E_fixed) == (21, 5 - (E is not None), E is not None)
    assert sorted(fit.se) == sorted(fitted_names("chinchilla", E))


@pytest.mark.parametrize("E", [None, POWER_TRUTH["E"]])
def test_power_law_fit_recovers_noiseless_law(E):
    N = np.geomspace(2e3, 6e4, 6)  # 30×
    fit = fit_power_law(N, power_law(N, **POWER_TRUTH), E=E)
    for name in POWER_TRUTH:
        assert fit.params[name] == pytest.approx(POWER_TRUTH[name], rel=1e-7), name
    assert sorted(fit.se) == sorted(fitted_names("power_law", E))


@given(E=st.floats(0.0, 3.0), A=st.floats(1.0, 1000.0), alpha=st.floats(0.05, 1.5),
       low=st.floats(2.0, 4.0))
def test_power_law_fit_recovers_drawn_laws(E, A, alpha, low):
    N = np.geomspace(10 ** low, 10 ** (low + 2), 7)
    term = A * N ** -alpha
    assume(term.min() >= 1e-6 * (E + term.max()))  # else flat at the large N: nothing to fit
    fit = fit_power_law(N, power_law(N, E, A, alpha))
    np.testing.assert_allclose([fit.params["E"], fit.params["A"], fit.params["alpha"]],
                               [E, A, alpha], rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("E", [None, 1.0])
def test_exponents_stay_positive(E):
    # Losses that grow with N, L = 1 + 0.01·N^0.3, are best fitted by α = −0.3; the fit keeps
    # α > 0 (its best there is a nearly flat law) and says how poorly it fits.
    N = np.geomspace(1e3, 1e6, 8)
    fit = fit_power_law(N, 1.0 + 0.01 * N ** 0.3, E=E)
    assert fit.params["alpha"] > 0
    assert fit.rss > 1e-3


# ----------------------------------------------------------------------------------------------
# Noisy points: the truth within 5 standard errors, standard errors that match their spread


@pytest.mark.parametrize("law", ["power_law", "chinchilla"])
@pytest.mark.parametrize("E", [None, TRUTH["E"]])
def test_noisy_fit_holds_truth_within_five_standard_errors(law, E):
    fit = fit_noisy(law, E, seed=1)
    for name, se in fit.se.items():
        assert 0 < se < 0.1 * abs(TRUTH[name]), (name, se)  # an estimate, and a useful one
        assert abs(fit.params[name] - TRUTH[name]) < 5 * se, (name, fit.params[name], se)
    # s² = RSS/(n − p) estimates σ² (SIGMA², the noise drawn): s²/σ² ~ χ²_(n−p)/(n−p), of mean 1
    # and sd sqrt(2/(n − p)) <= 0.211 for n − p >= 45 here; 1 ± 5 sd lies within (0, 2.1).
    assert 0 < fit.rss / (fit.n_points - fit.n_fitted) / SIGMA ** 2 < 2.1


def test_standard_errors_match_the_spread_over_seeds():
    # The reported se against the standard deviation of 12 fits to independent noise. The
    # sample sd of 12 values has a relative sd of ~1/sqrt(2·11) = 0.21; a factor of 3
    # (ln 3 = 1.1) is 5 of those.
    fits = [fit_noisy("chinchilla", None, seed, n_N=8, n_D=4) for seed in range(12)]
    for name in TRUTH:
        spread = np.std([f.params[name] for f in fits], ddof=1)
        se = np.mean([f.se[name] for f in fits])
        assert 1 / 3 < se / spread < 3, (name, se, spread)


@pytest.mark.parametrize("E", [None, TRUTH["E"]])
def test_standard_errors_are_the_linearized_covariance_in_N_and_D(E):
    # The fit works in ln(N/N0) and ln(D/D0) and carries the covariance over; the result must
    # be s²·(JᵀJ)⁻¹ with the Jacobian of the law in N and D themselves:
    # ∂L/∂E = 1, ∂L/∂A = N^−α, ∂L/∂α = −A·N^−α·ln N, ∂L/∂B = D^−β, ∂L/∂β = −B·D^−β·ln D.
    fit = fit_noisy("chinchilla", E, seed=2, n_N=7, n_D=4)
    N, D = sweep(7, 4)
    p = fit.params
    columns = {"E": np.ones_like(N), "A": N ** -p["alpha"],
               "alpha": -p["A"] * N ** -p["alpha"] * np.log(N), "B": D ** -p["beta"],
               "beta": -p["B"] * D ** -p["beta"] * np.log(D)}
    names = fitted_names("chinchilla", E)
    J = np.stack([columns[name] for name in names], axis=1)
    cov = fit.rss / (fit.n_points - fit.n_fitted) * np.linalg.inv(J.T @ J)
    np.testing.assert_allclose([fit.se[name] for name in names], np.sqrt(np.diag(cov)),
                               rtol=1e-6)


# ----------------------------------------------------------------------------------------------
# Refusals


@pytest.mark.parametrize("law,E,p", [("power_law", None, 3), ("power_law", 0.8, 2),
                                     ("chinchilla", None, 5), ("chinchilla", 0.8, 4)])
def test_refuses_fewer_than_p_plus_one_points_and_takes_p_plus_one(law, E, p):
    N = np.geomspace(1e3, 1e6, p + 1)
    D = np.array([1e5, 1e7, 1e6, 3e5, 3e6, 1e5])[:p + 1]  # 3 distinct values or more
    noise = 0.001 * (np.arange(p + 1) % 2)  # 0, 1e-3, 0, ...: an RSS > 0
    L = chinchilla_law(N, D, **TRUTH) + noise
    if law == "power_law":
        L = power_law(N, **POWER_TRUTH) + noise
        fit = fit_power_law(N, L, E=E)
        with pytest.raises(ValueError, match=f"fits {p} parameters and needs at least {p + 1} "
                                             f"points .* got {p}"):
            fit_power_law(N[:p], L[:p], E=E)
    else:
        fit = fit_chinchilla(N, D, L, E=E)
        with pytest.raises(ValueError, match=f"fits {p} parameters and needs at least {p + 1} "
                                             f"points .* got {p}"):
            fit_chinchilla(N[:p], D[:p], L[:p], E=E)
    assert fit.n_points == p + 1 and fit.n_fitted == p
    assert all(np.isfinite(list(fit.se.values())))


N8, D8 = np.geomspace(1e3, 1e6, 8), np.geomspace(1e5, 1e7, 8)
L8 = chinchilla_law(N8, D8, **TRUTH)


@pytest.mark.parametrize("args,message", [
    ((N8, D8[:7], L8), "N, D, L must have equal lengths, got N: 8, D: 7, L: 8"),
    ((N8, D8, L8[:-1]), "got N: 8, D: 8, L: 7"),
    ((N8.reshape(2, 4), D8, L8), r"N must be a 1-D sequence of numbers, got shape \(2, 4\)"),
    ((np.r_[N8[:7], np.nan], D8, L8), r"N\[7\] = nan must be finite and > 0"),
    ((np.r_[-1.0, N8[1:]], D8, L8), r"N\[0\] = -1.0 must be finite and > 0"),
    ((N8, np.r_[D8[:3], 0.0, D8[4:]], L8), r"D\[3\] = 0.0 must be finite and > 0"),
    ((N8, np.r_[D8[:3], np.inf, D8[4:]], L8), r"D\[3\] = inf must be finite and > 0"),
    ((N8, D8, np.r_[L8[:2], np.nan, L8[3:]]), r"L\[2\] = nan must be finite"),
])
def test_fit_chinchilla_refuses_bad_input(args, message):
    with pytest.raises(ValueError, match=message):
        fit_chinchilla(*args)


def test_fit_power_law_refuses_bad_input():
    with pytest.raises(ValueError, match="N, L must have equal lengths, got N: 8, L: 7"):
        fit_power_law(N8, L8[:7])
    with pytest.raises(ValueError, match=r"L\[1\] = inf must be finite"):
        fit_power_law(N8, np.r_[L8[0], np.inf, L8[2:]])
    with pytest.raises(ValueError, match="E must be None .* got E=nan"):
        fit_power_law(N8, L8, E=float("nan"))
    with pytest.raises(ValueError, match=r"L must be a 1-D sequence of numbers, got shape \(\)"):
        fit_power_law(N8, 3.0)
    with pytest.raises(TypeError, match="N must be a 1-D sequence of numbers, got 'many'"):
        fit_power_law("many", L8)
    with pytest.raises(ValueError, match="E must be None .* got E='0.8'"):
        fit_power_law(N8, L8, E="0.8")


def test_refuses_points_that_do_not_determine_the_parameters():
    # one D for every point: B·D^−β is a constant, not separable from E
    N = np.geomspace(1e3, 1e6, 8)
    D = np.full(8, 1e6)
    with pytest.raises(ValueError, match=r"8 distinct N, 1 distinct D\) do not determine the 5 "
                                         r"parameters E, A, alpha, B, beta"):
        fit_chinchilla(N, D, chinchilla_law(N, D, **TRUTH))


def test_predict_and_to_dict():
    N, D = sweep(6, 3)
    fit = fit_chinchilla(N, D, chinchilla_law(N, D, **TRUTH))
    np.testing.assert_allclose(fit.predict([2e3, 5e5], [1e6, 1e6]),
                               chinchilla_law(np.array([2e3, 5e5]), 1e6, **TRUTH), rtol=1e-9)
    with pytest.raises(ValueError, match="needs D"):
        fit.predict(1e4)
    d = json.loads(json.dumps(fit.to_dict()))
    assert d["law"] == "chinchilla" and d["params"] == fit.params and d["n_fitted"] == 5
    power = fit_power_law(N[:6], power_law(N[:6], **POWER_TRUTH), E=0.8)
    assert power.predict(1e4) == pytest.approx(power_law(1e4, **POWER_TRUTH), rel=1e-9)
    with pytest.raises(ValueError, match="a law of N alone"):
        power.predict(1e4, 1e6)
    assert "E" not in power.to_dict()["se"] and power.to_dict()["params"]["E"] == 0.8


# ----------------------------------------------------------------------------------------------
# The compute-optimal allocation


def law_fit(params):
    return Fit(law="chinchilla", params=params, se={}, rss=0.0, n_points=0, n_fitted=5,
               E_fixed=False)


# The truth of the sweeps, and Chinchilla's own parametric fit (Hoffmann et al. 2022, approach
# 3: E = 1.69, A = 406.4, B = 410.7, α = 0.34, β = 0.28).
LAWS = [TRUTH, dict(E=1.69, A=406.4, alpha=0.34, B=410.7, beta=0.28)]


@pytest.mark.parametrize("params", LAWS)
@pytest.mark.parametrize("C", [1e12, 3e15, 1e21])
def test_optimal_n_is_the_minimum_on_the_iso_compute_curve(params, C):
    fit = law_fit(params)
    N_opt, D_opt = optimal_n(fit, C), optimal_d(fit, C)
    assert 6 * N_opt * D_opt == pytest.approx(C, rel=1e-12)

    def iso_compute_loss(N):
        return chinchilla_law(N, C / (6 * N), **params)

    assert iso_compute_loss(N_opt) < iso_compute_loss(N_opt * 1.1)
    assert iso_compute_loss(N_opt) < iso_compute_loss(N_opt / 1.1)
    # a dense numeric argmin over 6 decades either side, 1e-5 of a decade apart
    N = N_opt * np.logspace(-6, 6, 1_200_001)
    N_numeric = N[np.argmin(iso_compute_loss(N))]
    assert N_numeric == pytest.approx(N_opt, rel=1e-4)


def test_optimal_n_takes_arrays_and_refuses_what_has_no_optimum():
    fit = law_fit(TRUTH)
    C = np.array([1e12, 1e15])
    np.testing.assert_allclose(optimal_n(fit, C), [optimal_n(fit, 1e12), optimal_n(fit, 1e15)])
    # N_opt ∝ C^(β/(α+β)) = C^(4/9)
    assert optimal_n(fit, 1e15) / optimal_n(fit, 1e12) == pytest.approx(1e3 ** (4 / 9))
    with pytest.raises(ValueError, match="C must be finite and > 0"):
        optimal_n(fit, -1.0)
    with pytest.raises(ValueError, match="needs A > 0 and B > 0, got A=40.0, B=-1.0"):
        optimal_n(law_fit(dict(TRUTH, B=-1.0)), 1e12)
    power = fit_power_law(N8, power_law(N8, **POWER_TRUTH))
    with pytest.raises(ValueError, match="Chinchilla's form"):
        optimal_d(power, 1e12)


# ----------------------------------------------------------------------------------------------
# The frontier


def point(N, D, loss):
    return {"n_params": N, "tokens": D, "loss": loss}


def test_frontier_by_hand():
    points = [
        # 6ND = 2.1e6: log2 = 21.002, level 21 (2^21 = 2097152)
        point(1000, 350, 3.0), point(2000, 175, 2.9), point(500, 700, 3.2),
        # 6ND = 2.1e6·1.3 lies within √2 of 2^21: level 21 too, and the best of it
        point(1300, 350, 2.8),
        # 6ND = 2.1e6·1.5 is beyond √2: level 22, alone, left out
        point(1500, 350, 2.0),
        # 6ND = 8.4e6: level 23
        point(1000, 1400, 2.5), point(4000, 350, 2.6),
        # level 25, alone, left out
        point(1000, 5600, 2.1),
    ]
    rows = frontier(points)
    assert rows == [
        {"compute": 2 ** 21, "best_n": 1300.0, "best_loss": 2.8, "n_points": 4},
        {"compute": 2 ** 23, "best_n": 1000.0, "best_loss": 2.5, "n_points": 2},
    ]
    fit = law_fit(TRUTH)
    with_fit = frontier(points[::-1], fit=fit)  # the order of the points does not matter
    assert [r["best_n"] for r in with_fit] == [1300.0, 1000.0]
    assert [r["predicted_n"] for r in with_fit] == [optimal_n(fit, 2 ** 21),
                                                    optimal_n(fit, 2 ** 23)]


def test_frontier_refuses_bad_points():
    with pytest.raises(TypeError, match=r"points\[0\] must be a dict .* got \(1, 2, 3.0\)"):
        frontier([(1, 2, 3.0)])
    with pytest.raises(ValueError, match=r"points\[1\] lacks tokens"):
        frontier([point(1, 2, 3.0), {"n_params": 1, "loss": 2.0}])
    with pytest.raises(ValueError, match=r"points\[0\]\['n_params'\] must be a finite number > 0"):
        frontier([point(0, 2, 3.0)])
    with pytest.raises(ValueError, match=r"points\[0\]\['loss'\] must be a finite number, got "
                                         "nan"):
        frontier([point(1, 2, float("nan"))])
    with pytest.raises(ValueError, match="Chinchilla's form"):
        frontier([], fit=fit_power_law(N8, power_law(N8, **POWER_TRUTH)))
