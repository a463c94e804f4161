"""Scaling laws: how held-out loss falls with parameters and tokens (tutorial, 规模很重要), fitted.

The tutorial's key point 5 says that more data and larger models usually do better. Two laws
say by how much:

    L(N)    = E + A·N^(−α)                  Kaplan et al. 2020, "Scaling Laws for Neural Language
                                            Models" (their eq. 1.1 is (N_c/N)^α_N; E added), at a
                                            token budget large enough that D does not limit
    L(N, D) = E + A·N^(−α) + B·D^(−β)       Hoffmann et al. 2022, "Training Compute-Optimal Large
                                            Language Models" (Chinchilla), eq. 2

N is the number of non-embedding parameters, D the number of training tokens, L the held-out
loss in nats per token. E is the loss no model can beat: the entropy of the text. The papers
fit it; here the data source's exact entropy per token is known, so every fit is made twice,
with E free (``E=None``) and with E fixed to the given value, and the two can be compared.

How a fit is made (fit_power_law, fit_chinchilla), step by step:

0. **Least squares on L, not on log L.** The noise of a held-out loss (a mean over many
   tokens) is additive and about the same size at every point, so every point deserves the same
   weight on the scale of L. (Chinchilla fits a Huber loss on log L instead.)
1. **Scaled variables.** x = ln(N/N0), y = ln(D/D0), N0 and D0 the geometric means of the
   points' N and D. The law is the same with a = A·N0^(−α), b = B·D0^(−β):
   A·N^(−α) = a·exp(−α x). With N from ~1e3 to ~1e6, x lies within ±3.5 and the columns of
   the Jacobian are of similar size; with ln N itself (7 to 14) the column of α is 7 to 14
   times that of A and nearly parallel to it. (8 points from 1e3 to 1e6, A = 40, α = 0.5: the
   Jacobian's condition number is 16 in x, 4100 in ln N.)
2. **Variable projection.** For fixed exponents the law is linear in (E, a, b). For every
   exponent on the grid EXPONENT_GRID (for Chinchilla's form, every pair (α, β)), linear least
   squares (np.linalg.lstsq) gives the best (E, a, b) and its RSS; the best grid point is the
   start of step 3.
3. **Levenberg–Marquardt** on all fitted parameters together, with the analytic Jacobian
   (∂L/∂E = 1, ∂L/∂a = exp(−α x), ∂L/∂α = −a·exp(−α x)·x, the same for b and β): the step
   δ solves (JᵀJ + λ·diag(JᵀJ)) δ = Jᵀr (Marquardt 1963); a step that lowers the RSS is taken
   and λ divided by 10, any other (or one that makes an exponent <= 0) is rejected and λ
   multiplied by 10; at most LM_MAX_ITERATIONS steps.
4. **Standard errors** from the linearized covariance s²·(JᵀJ)⁻¹, s² = RSS/(n − p), in the
   scaled parameters, carried over to (E, A, α, B, β) by the delta method. This assumes
   independent noise of equal size at every point, and a law that is nearly linear in its
   parameters within a few standard errors (true when the noise is small).

N, D and L in; a ``Fit`` out. ``optimal_n``/``optimal_d`` give Chinchilla's compute-optimal
allocation from a fit, ``frontier`` the measured best N at each compute level of a sweep.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

import numpy as np

# The exponents tried in step 2: 40 values from 0.02 to 3, log-spaced, neighbours 13.7% apart
# (Levenberg–Marquardt refines from there). The range holds Kaplan's α_N = 0.076, Chinchilla's
# α = 0.34 and β = 0.28, and the steeper laws of tiny models.
EXPONENT_GRID = np.geomspace(0.02, 3.0, 40)
LM_MAX_ITERATIONS = 200
LM_DAMPING_START = 1e-3  # λ of the first step: close to a Gauss–Newton step
LM_DAMPING_FACTOR = 10.0  # λ ÷ this after a step taken, × this after a step rejected
LM_DAMPING_MAX = 1e16  # no step downhill even this short: the fit is at a minimum
LM_TOLERANCE = 1e-14  # a step that lowers the RSS by less than this share of it ends the fit
# Training compute C ≈ 6·N·D FLOPs: 2 per parameter and token forward, 4 backward (Kaplan et al.
# 2020, §2.1).
FLOPS_PER_PARAMETER_TOKEN = 6.0

# Positions in the parameter vector theta = (E, a, α, b, β) of the scaled law (the power law
# uses the first three).
E_, A_, ALPHA_, B_, BETA_ = range(5)
NAMES = ("E", "A", "alpha", "B", "beta")


# ----------------------------------------------------------------------------------------------
# The laws


def power_law(N, E, A, alpha):
    """L(N) = E + A·N^(−α)  (Kaplan et al. 2020, with the irreducible loss E). N: any shape."""
    N = np.asarray(N, dtype=np.float64)
    return E + A * N ** -alpha


def chinchilla_law(N, D, E, A, alpha, B, beta):
    """L(N, D) = E + A·N^(−α) + B·D^(−β)  (Hoffmann et al. 2022, eq. 2). N, D broadcast."""
    N = np.asarray(N, dtype=np.float64)
    D = np.asarray(D, dtype=np.float64)
    return E + A * N ** -alpha + B * D ** -beta


# ----------------------------------------------------------------------------------------------
# A fit


@dataclass(frozen=True)
class Fit:
    """A fitted law. ``se`` holds the standard errors of the fitted parameters only: with E
    fixed it has no "E" entry (E is then in ``params``, given, not estimated)."""

    law: str  # "power_law" (L(N)) or "chinchilla" (L(N, D))
    params: dict  # "E", "A", "alpha" [, "B", "beta"] -> float
    se: dict  # the fitted ones of params -> standard error
    rss: float  # Σ_i (L_i − L̂_i)², nats²
    n_points: int  # n
    n_fitted: int  # p: 3 (2 with E fixed) for the power law, 5 (4) for Chinchilla's form
    E_fixed: bool

    def predict(self, N, D=None):
        """The fitted law at N (and D, which Chinchilla's form needs and the power law
        refuses). Any shapes that broadcast."""
        if self.law == "power_law":
            if D is not None:
                raise ValueError(f"a power-law fit is a law of N alone; got D={D!r}")
            return power_law(N, **self.params)
        if D is None:
            raise ValueError("a Chinchilla fit needs D (training tokens) besides N, got D=None")
        return chinchilla_law(N, D, **self.params)

    def to_dict(self):
        """A JSON-ready dict of every field."""
        return asdict(self)


def _scaled_law(theta, x, y):
    """L̂ = E + a·exp(−α x) [+ b·exp(−β y)] and its Jacobian at theta = (E, a, α[, b, β]).

    x = ln(N/N0), y = ln(D/D0) (None for the power law). Columns of the Jacobian:
        ∂L̂/∂E = 1,  ∂L̂/∂a = exp(−α x),  ∂L̂/∂α = −a·exp(−α x)·x,
        ∂L̂/∂b = exp(−β y),  ∂L̂/∂β = −b·exp(−β y)·y.
    (n,) -> L̂ (n,), J (n, len(theta)).
    """
    n_term = np.exp(-theta[ALPHA_] * x)  # (n,) (N/N0)^(−α)
    L_hat = theta[E_] + theta[A_] * n_term
    columns = [np.ones_like(x), n_term, -theta[A_] * n_term * x]
    if y is not None:
        d_term = np.exp(-theta[BETA_] * y)  # (n,) (D/D0)^(−β)
        L_hat = L_hat + theta[B_] * d_term
        columns += [d_term, -theta[B_] * d_term * y]
    return L_hat, np.stack(columns, axis=1)


def _rss(L, L_hat):
    """Σ_i (L_i − L̂_i)²"""
    r = L - L_hat
    with np.errstate(over="ignore"):  # squares beyond float64's range: inf, refused by the caller
        return float(r @ r)


def _grid_start(x, y, L, E, fitted):
    """Step 2, variable projection: for every exponent (pair) of the grid, the linear
    coefficients (E, a[, b]) by linear least squares; -> the theta with the lowest RSS.

    For fixed exponents L̂ = E·1 + a·exp(−α x) [+ b·exp(−β y)] is linear in the coefficients,
    whose columns are the Jacobian's columns ∂L̂/∂E, ∂L̂/∂a, ∂L̂/∂b. With E fixed the target is
    L − E and the column of E is left out.
    """
    exponents = [ALPHA_] if y is None else [ALPHA_, BETA_]
    linear = [i for i in fitted if i not in exponents]  # E (if free), a, b
    best_rss, best = np.inf, None
    for values in itertools.product(EXPONENT_GRID, repeat=len(exponents)):
        theta = np.zeros(3 if y is None else 5)
        theta[E_] = 0.0 if E is None else E
        theta[exponents] = values
        _, J = _scaled_law(theta, x, y)
        coefficients = np.linalg.lstsq(J[:, linear], L - theta[E_], rcond=None)[0]
        theta[linear] = coefficients
        rss = _rss(L - theta[E_], J[:, linear] @ coefficients)  # L̂ − E = J_linear·coefficients
        if rss < best_rss:
            best_rss, best = rss, theta
    if best is None:  # every RSS inf or NaN: squares beyond float64's range
        raise ValueError(f"the losses are too large to fit: their squared residuals overflow "
                         f"float64 (largest |L| = {np.abs(L).max():.3g})")
    return best


def _levenberg_marquardt(theta, x, y, L, fitted):
    """Step 3: Levenberg–Marquardt from theta on the parameters ``fitted`` (indices into theta);
    -> (theta, RSS) at the end.

    δ solves (JᵀJ + λ·diag(JᵀJ)) δ = Jᵀr, r = L − L̂ (Marquardt 1963: λ → 0 is Gauss–Newton,
    large λ a short step down the gradient, each parameter scaled by its own column). A step
    that lowers the RSS and keeps every exponent > 0 is taken and λ ÷ 10; otherwise λ × 10.
    Ends after a step that lowers the RSS by less than LM_TOLERANCE of it, when λ passes
    LM_DAMPING_MAX (no step downhill), or after LM_MAX_ITERATIONS steps.
    """
    exponents = [ALPHA_] if y is None else [ALPHA_, BETA_]
    damping = LM_DAMPING_START
    L_hat, J = _scaled_law(theta, x, y)
    rss = _rss(L, L_hat)
    for _ in range(LM_MAX_ITERATIONS):
        J_fit = J[:, fitted]  # (n, p)
        JtJ = J_fit.T @ J_fit  # (p, p)
        # lstsq, not solve: a column of zeros (a = 0 leaves α without effect) makes the damped
        # matrix singular, and lstsq then leaves that parameter alone.
        step = np.linalg.lstsq(JtJ + damping * np.diag(np.diag(JtJ)), J_fit.T @ (L - L_hat),
                               rcond=None)[0]  # (p,)
        trial = theta.copy()
        trial[fitted] += step
        trial_L_hat, trial_J = _scaled_law(trial, x, y)
        trial_rss = _rss(L, trial_L_hat)
        if np.all(trial[exponents] > 0) and trial_rss < rss:
            converged = rss - trial_rss <= LM_TOLERANCE * rss
            theta, L_hat, J, rss = trial, trial_L_hat, trial_J, trial_rss
            damping /= LM_DAMPING_FACTOR
            if converged:
                break
        else:
            damping *= LM_DAMPING_FACTOR
            if damping > LM_DAMPING_MAX:
                break
    return theta, rss


def _fit(law, N, D, L, E):
    """Steps 1 to 4 of the module's docstring, for checked inputs; D is None for the power law."""
    n_params = 3 if D is None else 5
    fitted = [i for i in range(n_params) if not (i == E_ and E is not None)]
    N0 = np.exp(np.mean(np.log(N)))  # geometric mean
    x = np.log(N / N0)  # (n,)
    y = None
    D0 = 1.0
    if D is not None:
        D0 = np.exp(np.mean(np.log(D)))
        y = np.log(D / D0)
    theta = _grid_start(x, y, L, E, fitted)
    theta, rss = _levenberg_marquardt(theta, x, y, L, fitted)

    # Step 4: cov = s²·(JᵀJ)⁻¹ in the scaled parameters ...
    _, J = _scaled_law(theta, x, y)
    J_fit = J[:, fitted]  # (n, p)
    n, p = J_fit.shape
    rank = np.linalg.matrix_rank(J_fit)
    if rank < p:
        n_N = len(np.unique(N))
        n_D = "" if D is None else f", {len(np.unique(D))} distinct D"
        raise ValueError(
            f"the {n} points ({n_N} distinct N{n_D}) do not determine the {p} parameters "
            f"{', '.join(NAMES[i] for i in fitted)}: the Jacobian at the fit has rank {rank}. "
            "The power law needs as many distinct N as it fits parameters; Chinchilla's form "
            "needs N and D to vary independently (with E free, over at least 3 values each)")
    cov_scaled = rss / (n - p) * np.linalg.inv(J_fit.T @ J_fit)  # (p, p)
    # ... carried to (E, A, α, B, β) by the delta method, cov = T·cov_scaled·Tᵀ with
    # T = ∂(E, A, α[, B, β])/∂(E, a, α[, b, β]): A = a·N0^α, so ∂A/∂a = N0^α, ∂A/∂α = A·ln N0
    # (B the same with D0, β); every other entry is that of the identity.
    params = theta.copy()  # (E, A, α[, B, β])
    params[A_] = theta[A_] * N0 ** theta[ALPHA_]
    T = np.eye(n_params)
    T[A_, A_], T[A_, ALPHA_] = N0 ** theta[ALPHA_], params[A_] * np.log(N0)
    if D is not None:
        params[B_] = theta[B_] * D0 ** theta[BETA_]
        T[B_, B_], T[B_, BETA_] = D0 ** theta[BETA_], params[B_] * np.log(D0)
    T_fit = T[np.ix_(fitted, fitted)]  # A and B depend on fitted parameters only
    cov = T_fit @ cov_scaled @ T_fit.T  # (p, p)
    se = np.sqrt(np.diag(cov))
    return Fit(law=law, params={NAMES[i]: float(params[i]) for i in range(n_params)},
               se={NAMES[i]: float(s) for i, s in zip(fitted, se)}, rss=rss, n_points=n,
               n_fitted=p, E_fixed=E is not None)


# ----------------------------------------------------------------------------------------------
# Checks at the door


def _is_number(v):
    """A real number (an int or a float, Python's or NumPy's), not a bool."""
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _values(name, values, positive):
    """``values`` as a 1-D float64 array whose every entry is finite (and > 0 if positive)."""
    try:
        a = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a 1-D sequence of numbers, got {values!r}") from None
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of numbers, got shape {a.shape}")
    bad = ~np.isfinite(a) | (positive & (a <= 0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        must = "finite and > 0" if positive else "finite"
        raise ValueError(f"{name}[{i}] = {float(a[i])!r} must be {must}")
    return a


def _check_inputs(fit_name, columns, E, p):
    """Equal lengths, a finite E (or None), and at least p + 1 points: p to fit the parameters
    and one more to estimate the noise (s² = RSS/(n − p))."""
    lengths = {name: len(a) for name, a in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"{fit_name}: {', '.join(lengths)} must have equal lengths, got "
                         f"{', '.join(f'{k}: {v}' for k, v in lengths.items())}")
    if E is not None and not (_is_number(E) and np.isfinite(E)):
        raise ValueError(f"{fit_name}: E must be None (fit it) or a finite number, got E={E!r}")
    n = lengths["L"]
    if n < p + 1:
        free = "fixed" if E is not None else "free"
        raise ValueError(f"{fit_name} with E {free} fits {p} parameters and needs at least "
                         f"{p + 1} points ({p} to fit, 1 to estimate the noise), got {n}")


def fit_power_law(N, L, E=None):
    """Fit L(N) = E + A·N^(−α) by least squares on L (steps 0 to 4 of the module's docstring).

    N (n,) parameters, > 0; L (n,) held-out losses in nats per token; E None (fit it) or the
    known irreducible loss (then only A and α are fitted). -> Fit with law "power_law".
    """
    N = _values("N", N, positive=True)
    L = _values("L", L, positive=False)
    _check_inputs("fit_power_law", {"N": N, "L": L}, E, 2 if E is not None else 3)
    return _fit("power_law", N, None, L, E)


def fit_chinchilla(N, D, L, E=None):
    """Fit L(N, D) = E + A·N^(−α) + B·D^(−β) (Hoffmann et al. 2022, eq. 2) by least squares on
    L (steps 0 to 4 of the module's docstring).

    N (n,) parameters and D (n,) training tokens, > 0; L (n,) held-out losses in nats per
    token; E None (fit it) or the known irreducible loss. -> Fit with law "chinchilla".
    """
    N = _values("N", N, positive=True)
    D = _values("D", D, positive=True)
    L = _values("L", L, positive=False)
    _check_inputs("fit_chinchilla", {"N": N, "D": D, "L": L}, E, 4 if E is not None else 5)
    return _fit("chinchilla", N, D, L, E)


# ----------------------------------------------------------------------------------------------
# Compute-optimal allocation


def _chinchilla_params(fit):
    """(A, α, B, β) of a Chinchilla fit, refused unless A, B > 0 (otherwise a term would grow
    with N or D and no allocation is best)."""
    if not isinstance(fit, Fit) or fit.law != "chinchilla":
        raise ValueError(f"fit must be a Fit of Chinchilla's form (fit_chinchilla), got {fit!r}")
    p = fit.params
    if not (p["A"] > 0 and p["B"] > 0):
        raise ValueError(f"the compute-optimal allocation needs A > 0 and B > 0, got "
                         f"A={p['A']!r}, B={p['B']!r}")
    return p["A"], p["alpha"], p["B"], p["beta"]


def _compute(C):
    """C as a float64 array (any shape) of finite values > 0."""
    C = np.asarray(C, dtype=np.float64)
    if not np.all(np.isfinite(C) & (C > 0)):
        raise ValueError(f"C must be finite and > 0 (FLOPs), got C={C!r}")
    return C


def optimal_n(fit, C):
    """The compute-optimal number of parameters for training compute C ≈ 6·N·D FLOPs:

        N_opt(C) = G·(C/6)^(β/(α+β)),   G = (αA/(βB))^(1/(α+β))
                                        (Hoffmann et al. 2022, eq. 4; derived in their App. D)

    Derivation: at fixed C, D = C/(6N), so the loss is
    f(N) = E + A·N^(−α) + B·(C/(6N))^(−β) = E + A·N^(−α) + B·(6/C)^β·N^β. Then
    f'(N) = −αA·N^(−α−1) + βB·(6/C)^β·N^(β−1) = 0  ⟺  αA·N^(−α) = βB·(6/C)^β·N^β
    ⟺  N^(α+β) = (αA/(βB))·(C/6)^β  ⟺  N = G·(C/6)^(β/(α+β)). It is the minimum: f' < 0
    below it and > 0 above it (for A, B, α, β > 0). E plays no part.
    fit: a Chinchilla Fit; C: FLOPs, a number or an array. -> N_opt, of C's shape.
    """
    A, alpha, B, beta = _chinchilla_params(fit)
    C = _compute(C)
    G = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
    N_opt = G * (C / FLOPS_PER_PARAMETER_TOKEN) ** (beta / (alpha + beta))
    return float(N_opt) if N_opt.ndim == 0 else N_opt


def optimal_d(fit, C):
    """The compute-optimal number of training tokens: D_opt(C) = C / (6·N_opt(C)), which is
    G⁻¹·(C/6)^(α/(α+β)) (Hoffmann et al. 2022, eq. 4)."""
    D_opt = _compute(C) / (FLOPS_PER_PARAMETER_TOKEN * np.asarray(optimal_n(fit, C)))
    return float(D_opt) if D_opt.ndim == 0 else D_opt


# ----------------------------------------------------------------------------------------------
# The measured frontier


def _point(i, point):
    """(N, D, loss) of points[i], checked."""
    if not isinstance(point, dict):
        raise TypeError(f"points[{i}] must be a dict with n_params, tokens and loss, got "
                        f"{point!r}")
    missing = [k for k in ("n_params", "tokens", "loss") if k not in point]
    if missing:
        raise ValueError(f"points[{i}] lacks {', '.join(missing)}: {point!r}")
    values = []
    for key in ("n_params", "tokens", "loss"):
        v = point[key]
        positive = key != "loss"
        if not _is_number(v) or not np.isfinite(v) or (positive and v <= 0):
            must = "a finite number > 0" if positive else "a finite number"
            raise ValueError(f"points[{i}]['{key}'] must be {must}, got {v!r}")
        values.append(float(v))
    return values


def frontier(points, fit=None):
    """The measured compute frontier of a sweep: at each compute level, the N with the lowest
    loss (and, given a Chinchilla fit, the N that optimal_n predicts there).

    points: dicts with "n_params" (N), "tokens" (D) and "loss". A point's compute is
    C = 6·N·D and its level k = round(log2 C): level k holds the points with
    2^(k−½) <= C < 2^(k+½), those within a factor √2 of 2^k. (Two points of one level may
    differ by up to a factor 2; two within √2 of each other may fall into neighbouring levels.)
    -> for every level with at least 2 points, sorted by compute:
       {"compute": 2**k, "best_n", "best_loss", "n_points"[, "predicted_n": optimal_n(fit, 2**k)]}
    """
    if fit is not None:
        _chinchilla_params(fit)
    levels = {}  # k -> [(N, loss), ...]
    for i, point in enumerate(points):
        N, D, loss = _point(i, point)
        C = FLOPS_PER_PARAMETER_TOKEN * N * D
        k = int(np.floor(np.log2(C) + 0.5))  # the nearest power of two (halves round up)
        levels.setdefault(k, []).append((N, loss))
    rows = []
    for k in sorted(levels):
        members = levels[k]
        if len(members) < 2:
            continue
        best = int(np.argmin([loss for _, loss in members]))  # the first of equal losses
        row = {"compute": 2 ** k, "best_n": members[best][0], "best_loss": members[best][1],
               "n_points": len(members)}
        if fit is not None:
            row["predicted_n"] = optimal_n(fit, 2 ** k)
        rows.append(row)
    return rows
