"""The sparse LU behind the direct solves (fokkerplanck.linalg): both backends give the same answers, a factor
PARDISO had to perturb is not used, and the steady state's inverse iteration stops when it has converged."""

import importlib.util
import warnings

import numpy as np
import pytest
import scipy.linalg as sla
import scipy.sparse as sp
import scipy.sparse.linalg as spla

import fokkerplanck as fp
from fokkerplanck import linalg

# find_spec, not pardiso_available(): loading MKL at collection changed the PARDISO arithmetic of later tests
# in this process against their subprocesses (the checkpoint resume test then differed in the last bits)
BACKENDS = ["superlu"] + (["pardiso"] if importlib.util.find_spec("pypardiso") is not None else [])
needs_pardiso = pytest.mark.skipif(
    "pardiso" not in BACKENDS, reason="pypardiso not installed (extra fokkerplanck[pardiso])"
)

A_OU = np.array([[2.0, 0.5], [0.5, 1.0]])
D_OU = np.array([[0.5, 0.2], [0.2, 0.3]])


@pytest.fixture
def backend(request, monkeypatch):
    monkeypatch.setattr(linalg, "_backend", None)  # restored after the test
    linalg.set_lu_backend(request.param)
    return request.param


def _ou(n=96, D=D_OU):
    grid = fp.Grid([(-5, 5, n), (-5, 5, n)])
    return fp.Problem(grid, fp.landscapes.Quadratic(A_OU), fp.noise.Constant(D))


def _step_matrix(prob, h=0.05):
    """I - h A for the problem's generator: a non-singular M-matrix, like those of the implicit time steps."""
    return (sp.identity(prob.grid.size, format="csr") - h * fp.generator(prob).A).tocsr()


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_steady_state_with_each_backend(backend):
    """OU with a full constant D: the stationary covariance against A S + S A^T = 2 D (measured relative error
    1.01e-4 at 96^2 with either backend: the scheme's O(h^2), not the LU), in two inverse-iteration solves."""
    ss = fp.steady_state(_ou())
    assert ss.info["lu"] == backend and ss.info["iterations"] == 2 and ss.info["lu_layout"] == "red-black numbering"
    assert ss.info["residual"] < 1e-13
    exact = sla.solve_continuous_lyapunov(A_OU, 2 * D_OU)
    assert np.abs(ss.cov() - exact).max() / np.abs(exact).max() < 1.5e-4


@needs_pardiso
def test_backends_agree_to_round_off(monkeypatch):
    monkeypatch.setattr(linalg, "_backend", None)
    gen = fp.generator(_ou(64))
    out = {}
    for name in ("superlu", "pardiso"):
        linalg.set_lu_backend(name)
        out[name] = fp.steady_state(gen).values
        T = fp.mean_first_passage_time(
            fp.Problem(
                fp.Grid([(-2, 2, 40), (-2, 2, 40)], bc="absorbing"),
                fp.landscapes.Quadratic(A_OU),
                fp.noise.Constant(D_OU),
            )
        )
        out[name + "-mfpt"] = T.values
        assert T.info["lu"] == name
    peak = out["superlu"].max()
    assert np.abs(out["superlu"] - out["pardiso"]).max() < 1e-13 * peak  # measured 1.8e-15
    assert (
        np.abs(out["superlu-mfpt"] - out["pardiso-mfpt"]).max() < 2e-12 * out["superlu-mfpt"].max()
    )  # measured 1.9e-13


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_lu_factor_solves_an_m_matrix(backend):
    """I - h A for a generator A (a non-singular M-matrix), against the dense solve."""
    M = _step_matrix(_ou(12))
    b = np.random.default_rng(0).random(M.shape[0])
    lu = linalg.LUFactor(M)
    assert lu.backend == backend and lu.nnz >= M.nnz
    np.testing.assert_allclose(lu.solve(b), np.linalg.solve(M.toarray(), b), rtol=1e-12)


@needs_pardiso
def test_pardiso_does_not_hand_back_a_perturbed_factor():
    """A singular matrix: PARDISO would perturb the zero pivot and return an answer; the factor is refused and
    SuperLU's error reaches the caller instead of a wrong solution."""
    M = sp.csr_matrix(np.array([[1.0, -1.0, 0.0], [-1.0, 1.0, 0.0], [0.0, 0.0, 2.0]]))
    with pytest.raises(RuntimeError, match="singular"):
        linalg.LUFactor(M, backend="pardiso")
    empty_row = sp.csr_matrix(np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 2.0]]))
    empty_row.eliminate_zeros()  # PARDISO is not called with it (MKL could crash)
    with pytest.raises(RuntimeError, match="singular"):
        linalg.LUFactor(empty_row, backend="pardiso")


def test_shifted_matrix_keeps_the_generators_pattern():
    """``shift I - scale A`` in the pattern of ``A`` (every diagonal stored): the values of scipy's
    ``shift I - scale A`` exactly; a matrix missing a diagonal entry gets scipy's result."""
    A = fp.generator(_ou(24)).A
    for shift, scale in ((1e-12, 1.0), (1.0, 0.05)):
        B = linalg.shifted(A, shift, scale)
        reference = (sp.identity(A.shape[0], format="csr") * shift - A * scale).tocsr()
        assert np.array_equal(B.indptr, A.indptr) and np.array_equal(B.indices, A.indices)
        assert np.array_equal(B.toarray(), reference.toarray())
    assert np.array_equal(A.data, fp.generator(_ou(24)).A.data)  # A itself untouched
    M = sp.csr_matrix(np.array([[0.0, -1.0], [-1.0, 2.0]]))
    M.eliminate_zeros()  # row 0 has no diagonal entry
    np.testing.assert_array_equal(linalg.shifted(M, 3.0, 2.0).toarray(), [[3.0, 2.0], [2.0, -1.0]])


def test_unknown_backends_are_rejected(monkeypatch):
    with pytest.raises(ValueError, match="unknown backend 'mumps'"):
        linalg.set_lu_backend("mumps")
    monkeypatch.setattr(linalg, "_backend", None)
    monkeypatch.setenv("FOKKERPLANCK_LU", "umfpack")
    with pytest.raises(ValueError, match="FOKKERPLANCK_LU='umfpack'"):
        linalg.lu_backend()
    monkeypatch.setenv("FOKKERPLANCK_LU", "superlu")
    assert linalg.lu_backend() == "superlu"
    if not linalg.pardiso_available():
        with pytest.raises(ImportError, match=r"fokkerplanck\[pardiso\]"):
            linalg.set_lu_backend("pardiso")


def test_wells_joined_below_the_shift_are_weighed_by_gth_elimination(monkeypatch):
    """The PRL valley far above Delta_S*: its wells x ~ +-1 are joined by a rate far below the shift eps, so
    inverse iteration stalls after the first solve (round-off moves ~1e-6 of the mass each time) and a second
    run from a start with the mass moved across the box lands elsewhere (measured L1 gap 0.63). The
    Grassmann-Taksar-Heyman elimination then gives the answer: mirror-symmetric to 1.1e-14, left-well mass
    0.5 + 3e-15 (inverse iteration's: 4.2e-6 away in L1). Without it (band over the limit) a warning says the
    split is not determined."""
    from fokkerplanck.landscapes import DegenerateValley
    from fokkerplanck.noise import HessianAligned

    land = DegenerateValley(lambdas=(8, -2, 1), eps=1e-3)
    prob = fp.Problem(fp.Grid([(-2, 2, 100), (-0.6, 0.6, 32)]), land, HessianAligned(3.2e-3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the cross-diffusion warning
        fp.generator(prob)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ss = fp.steady_state(prob, method="direct", estimate_error=False)
    assert ss.info["gth"] and ss.info["iterations"] == 3 and ss.info["split_gap"] > 0.1
    assert ss.info["residual"] < 1e-12
    v = ss.values
    assert np.abs(v - v[::-1, ::-1]).max() < 1e-13 * v.max()
    assert abs(ss.expect(lambda t: (t[..., 0] < 0).astype(float)) - 0.5) < 1e-13
    monkeypatch.setattr(linalg, "GTH_WORK_LIMIT", 0)
    with pytest.warns(RuntimeWarning, match="share of mass between them is not determined"):
        kept = fp.steady_state(prob, method="direct")
    assert "gth" not in kept.info and np.abs(kept.values - v).sum() * prob.grid.cell_volume < 1e-4


def test_gth_stationary_keeps_every_digit_of_deep_wells():
    """Tilted double well at T = 0.01 (barrier 100 T; the exact discrete steady state is exp(-L/T)): every cell
    above 1e-280 of the total to 1e-13 relative (measured 9.6e-14; 6,684 of 7,200 cells), and in 1D; None when
    the band is over the limit."""
    from fokkerplanck.landscapes import Custom
    from fokkerplanck.noise import Isotropic

    def well(d, T, tilt, cells):
        def loss(t):
            return (t[..., 0] ** 2 - 1) ** 2 + tilt * t[..., 0] + (0.5 * t[..., 1] ** 2 if d == 2 else 0.0)

        def grad(t):
            g = [4 * t[..., 0] * (t[..., 0] ** 2 - 1) + tilt] + ([t[..., 1]] if d == 2 else [])
            return np.stack(g, axis=-1)

        box = [(-2, 2, cells[0])] + ([(-1.5, 1.5, cells[1])] if d == 2 else [])
        return fp.Problem(fp.Grid(box), Custom(loss, grad), Isotropic(T))

    for prob in (well(2, 0.01, 0.001, (120, 60)), well(1, 0.005, 0.002, (400,))):
        exact = fp.steady_state(prob).values.ravel()  # detailed balance: the Boltzmann weights
        exact = exact / exact.sum()
        p = linalg.gth_stationary(fp.generator(prob).A, prob.grid.shape)
        seen = exact > 1e-280
        assert np.max(np.abs(p - exact)[seen] / exact[seen]) < 1e-13
    assert seen.sum() > 300
    with pytest.MonkeyPatch.context() as m:
        m.setattr(linalg, "GTH_WORK_LIMIT", 100.0)
        assert linalg.gth_stationary(fp.generator(prob).A, prob.grid.shape) is None


def test_diagonal_neighbours_pad_the_pattern_and_keep_the_values():
    """The 9-point pattern PARDISO gets in 2D: every diagonal neighbour present (as an explicit zero where M had
    nothing), nothing else added, every value of M unchanged; also for M restricted to some cells."""
    grid = fp.Grid([(-1, 1, 6), (-1, 1, 5)])
    A = fp.generator(fp.Problem(grid, fp.landscapes.Quadratic(np.eye(2)), fp.noise.Isotropic(0.3))).A
    assert A.nnz < 5 * grid.size  # a 5-point stencil
    for cells in (None, np.flatnonzero(np.arange(grid.size) % 7 != 3)):
        M = A if cells is None else A[cells][:, cells]
        P = linalg._with_diagonal_neighbours(M.tocsr(), grid.shape, cells)
        np.testing.assert_array_equal(P.toarray(), M.toarray())
        kept = np.arange(grid.size) if cells is None else cells
        Pc, Mc = P.tocoo(), M.tocoo()
        stored = set(zip(Pc.row.tolist(), Pc.col.tolist()))
        expected = set(zip(Mc.row.tolist(), Mc.col.tolist()))
        diagonal = np.isin(np.abs(kept[:, None] - kept[None, :]), (grid.shape[1] - 1, grid.shape[1] + 1))
        expected |= set(zip(*[a.tolist() for a in np.nonzero(diagonal)]))
        assert stored == expected


def _layout_fill(D, n):
    """Fill of PARDISO's LU of I - 0.05 A on an n^2 OU grid with constant D, the numbering used, and the fill
    with the matrix padded to the 9-point pattern in the natural numbering instead."""
    prob = _ou(n, D)
    M, shape = _step_matrix(prob), prob.grid.shape
    order = linalg._red_black_numbering(M, shape, None)[1]
    padded = linalg._with_diagonal_neighbours(M, shape, None)
    return (
        linalg.LUFactor(M, grid_shape=shape, backend="pardiso").nnz,
        order,
        linalg.LUFactor(padded, backend="pardiso").nnz,
    )


@needs_pardiso
def test_diagonal_stencils_are_numbered_red_black():
    """A full constant D gives 7-point stencils; PARDISO's minimum degree gets them numbered red-black (j reversed
    for anti-diagonal links), so a stencil and its mirror image get the same fill, a quarter below that of the
    matrix padded to the 9-point pattern in the natural numbering: measured 957,850 against 1,282,150 entries at
    128^2 (and 23.3 M against 28.7 M at 512^2)."""
    fill, order, padded = _layout_fill(D_OU, 128)
    fill_mirror, order_mirror, _ = _layout_fill(np.array([[0.5, -0.2], [-0.2, 0.3]]), 128)
    assert order is not None and order_mirror is not None
    assert fill == fill_mirror and fill < 0.8 * padded


def test_superlu_gets_the_red_black_numbering_too():
    """SuperLU's minimum degree on A + A^T also depends on the numbering: with the red-black numbering a 7-point
    stencil and its mirror image get the same fill (measured 974,234 entries at 128^2), below that of the
    natural numbering (1,038,610 and 1,128,368; at 512^2 23.5 M against 29.4 M)."""
    fills = []
    for D in (D_OU, np.array([[0.5, -0.2], [-0.2, 0.3]])):
        prob = _ou(128, D)
        M = _step_matrix(prob)
        fills.append(
            (
                linalg.LUFactor(M, grid_shape=prob.grid.shape, backend="superlu").nnz,
                linalg.LUFactor(M, backend="superlu").nnz,
            )
        )
    assert fills[0][0] == fills[1][0] and fills[0][0] < 0.95 * min(fills[0][1], fills[1][1])


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_a_factor_is_freed_with_its_last_reference(backend):
    """No reference cycle keeps a factor (and PARDISO's memory, hundreds of MB at 512^2) alive until the garbage
    collector runs: with the collector off, the factor goes with its last reference, on each path (2D red-black
    numbering, 2D red-black reduction, a matrix without a grid)."""
    import gc
    import weakref as wr

    ou, five = _ou(24), _five_point(shape=(24, 20))
    M_ou, M_five = _step_matrix(ou), _step_matrix(five)
    gc.disable()
    try:
        for M, shape in ((M_ou, ou.grid.shape), (M_five, five.grid.shape), (M_ou, None)):
            lu = linalg.LUFactor(M, grid_shape=shape)
            lu.solve(np.ones(M.shape[0]))
            ref = wr.ref(lu)
            del lu
            assert ref() is None
    finally:
        gc.enable()


def _five_point(bc="reflecting", shape=(60, 50)):
    grid = fp.Grid([(-3, 3, shape[0]), (-3, 3, shape[1])], bc=bc)
    return fp.Problem(grid, fp.landscapes.Quadratic(A_OU), fp.noise.Constant(np.diag([0.4, 0.2])))


def test_red_black_reduction_applies_to_bipartite_stencils_only():
    """The red cells are eliminated where every link joins a red cell to a black one: a diagonal D on a box,
    reflecting or absorbing, or periodic over an even number of cells; not a full D (diagonal links) nor a
    periodic seam across an odd number of cells. The reduced system has the black cells only."""

    def reduction(prob, cells=None):
        M = _step_matrix(prob)
        if cells is not None:
            M = M[cells][:, cells]
        return linalg._RedBlackReduction.of(M, prob.grid.shape, cells)

    for bc, shape in (("reflecting", (60, 50)), ("absorbing", (7, 9)), ("periodic", (8, 6))):
        r = reduction(_five_point(bc, shape))
        assert r is not None and r.matrix.shape[0] == r.black.size == (shape[0] * shape[1]) // 2
    assert reduction(_five_point(), cells=np.flatnonzero(np.arange(3000) % 7 != 3)) is not None
    assert reduction(_five_point("periodic", (8, 7))) is None
    assert reduction(_ou(12)) is None


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_the_layout_given_to_the_ordering_is_reported(backend):
    """A 5-point stencil that cannot be reduced (periodic over 7 cells): padded to 9 points for PARDISO's minimum
    degree, or METIS nested dissection for many solves; SuperLU takes it as given."""
    prob = _five_point("periodic", (8, 7))
    M = _step_matrix(prob)
    layouts = [linalg.LUFactor(M, grid_shape=prob.grid.shape, many_solves=many).layout for many in (False, True)]
    assert layouts == (["9-point padding", "nested dissection"] if backend == "pardiso" else ["as given"] * 2)


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_red_black_reduced_solves(backend):
    """Through the reduction: the direct steady state of a landscape with isotropic noise equals the exact
    discrete Boltzmann weights (measured 1.3e-15 of the peak with either backend); a first-passage time to an
    interior target equals scipy's spsolve on the whole system (2.4e-15); a solve with two right-hand sides
    equals the dense solve, also on an absorbing box (< 1e-15)."""
    grid = fp.Grid([(-3, 3, 60), (-3, 3, 50)])
    prob = fp.Problem(grid, fp.landscapes.Quadratic(A_OU), fp.noise.Isotropic(0.4))
    L = prob.loss(grid.points()).reshape(grid.shape)
    w = np.exp(-(L - L.min()) / 0.4)
    w /= w.sum() * grid.cell_volume
    ss = fp.steady_state(prob, method="direct")
    assert ss.info["lu"] == backend and ss.info["lu_layout"] == "red-black reduction"
    assert np.abs(ss.values - w).max() < 1e-14 * w.max()

    prob = _five_point()
    target = lambda t: np.hypot(t[..., 0], t[..., 1]) < 0.5
    free = ~target(grid.points())
    At = fp.generator(prob).A.T.tocsr()[free][:, free]
    exact = spla.spsolve(sp.csc_matrix(-At), np.ones(free.sum()))
    T = fp.mean_first_passage_time(prob, target).values.ravel()[free]
    assert np.abs(T - exact).max() < 2e-14 * exact.max()

    prob = _five_point("absorbing", (11, 9))
    M = _step_matrix(prob)
    b = np.random.default_rng(2).random((prob.grid.size, 2))
    x = linalg.LUFactor(M, grid_shape=prob.grid.shape).solve(b)
    np.testing.assert_allclose(x, np.linalg.solve(M.toarray(), b), rtol=1e-13)


def test_reduced_time_steps_equal_unreduced_ones(monkeypatch):
    """TR-BDF2 with a diagonal D: the red-black-reduced implicit solves give the densities of solves with the
    whole matrix (measured 4.5e-15 of the maximum)."""
    prob = _five_point()
    p0 = fp.Density.gaussian(prob.grid, mean=[1.0, -0.5], cov=0.2 * np.eye(2))
    reduced = fp.evolve(prob, p0, 0.5, dt=0.01, progress=False).final.values
    monkeypatch.setattr(linalg._RedBlackReduction, "of", classmethod(lambda cls, *args: None))
    whole = fp.evolve(_five_point(), p0, 0.5, dt=0.01, progress=False).final.values
    assert np.abs(reduced - whole).max() < 5e-14 * whole.max()


@needs_pardiso
@pytest.mark.parametrize(
    "D, centre",
    [(np.diag([0.4, 0.2]), 0.0), (np.array([[0.4, -0.15], [-0.15, 0.3]]), 0.5)],
    ids=["five-point", "anti-diagonal"],
)
def test_both_backends_agree_on_2d_layouts(monkeypatch, D, centre):
    """A direct steady state and a first-passage time to an interior target (the matrix restricted to the cells
    outside it) agree with SuperLU for a 5-point stencil (diagonal D: the case MKL's minimum degree was slow on,
    now reduced to the black cells) and for anti-diagonal links (D12 < 0: numbered red-black, j reversed).
    Measured 1.1e-15 and 2.2e-15 of the maximum (five-point), 1.9e-15 and 3.1e-15 (anti-diagonal)."""
    monkeypatch.setattr(linalg, "_backend", None)
    grid = fp.Grid([(-3, 3, 60), (-3, 3, 50)])
    prob = fp.Problem(grid, fp.landscapes.Quadratic(A_OU), fp.noise.Constant(D))
    target = lambda t: np.hypot(t[..., 0] - centre, t[..., 1]) < 0.5
    out = {}
    for name in ("superlu", "pardiso"):
        linalg.set_lu_backend(name)
        out[name] = (fp.steady_state(prob, method="direct").values, fp.mean_first_passage_time(prob, target).values)
    assert np.abs(out["superlu"][0] - out["pardiso"][0]).max() < 2e-14 * out["superlu"][0].max()
    assert np.abs(out["superlu"][1] - out["pardiso"][1]).max() < 2e-14 * out["superlu"][1].max()


@needs_pardiso
def test_implicit_time_steps_alike_on_both_backends(monkeypatch):
    """fp.evolve factorises I - c h A once (METIS order with PARDISO: many solves); TR-BDF2 densities agree."""
    monkeypatch.setattr(linalg, "_backend", None)
    prob = _ou(48)
    p0 = fp.Density.gaussian(prob.grid, mean=[1.0, -0.5], cov=0.2 * np.eye(2))
    out = {}
    for name in ("superlu", "pardiso"):
        linalg.set_lu_backend(name)
        traj = fp.evolve(prob, p0, 0.5, dt=0.01, progress=False)
        assert traj.info["linear_solver"] == name and traj.info["lu_layout"] == "red-black numbering"
        out[name] = traj.final.values
    assert np.abs(out["superlu"] - out["pardiso"]).max() < 5e-14 * out["superlu"].max()  # measured 1.0e-14


@needs_pardiso
def test_reproducible_factor_gives_the_same_bits_every_time():
    """A METIS-ordered PARDISO factor made on two threads differed by ~1e-13 between identical runs; the
    one-thread factor that fp.evolve uses must not (checkpoint resumes are exact)."""
    M = _step_matrix(_ou(80), h=0.01)
    b = np.random.default_rng(1).random(M.shape[0])
    x = [
        linalg.LUFactor(M, grid_shape=(80, 80), many_solves=True, reproducible=True, backend="pardiso").solve(b)
        for _ in range(5)
    ]
    assert all(np.array_equal(x[0], xi) for xi in x[1:])
    np.testing.assert_allclose(x[0], linalg.LUFactor(M, backend="superlu").solve(b), rtol=1e-12)


def test_gth_band_follows_a_periodic_seam():
    """A washboard periodic along the long axis: numbering it slowest would put the seam's links a whole grid
    apart; the band takes the other axis order and stays narrow, and the answer is the Boltzmann weights to
    1e-13 relative in every cell above 1e-250 of the total (measured 1.7e-14 at 160 x 40)."""
    from fokkerplanck.landscapes import Custom
    from fokkerplanck.noise import Isotropic

    loss = Custom(
        lambda t: 1.5 * np.cos(np.pi * t[..., 0] / 2) + 0.5 * t[..., 1] ** 2,
        lambda t: np.stack([-0.75 * np.pi * np.sin(np.pi * t[..., 0] / 2), t[..., 1]], axis=-1),
    )
    grid = fp.Grid([(-2, 2, 100), (-1.5, 1.5, 30)], bc=["periodic", "reflecting"])
    prob = fp.Problem(grid, loss, Isotropic(0.05))
    exact = fp.steady_state(prob).values.ravel()
    exact = exact / exact.sum()
    A = fp.generator(prob).A
    band, b, _ = linalg._rate_band(A.shape[0], *_off_diagonal_rates(A), grid.shape, None)
    assert b <= grid.shape[0] + 1  # not (100 - 1) * 30
    p = linalg.gth_stationary(A, grid.shape)
    seen = exact > 1e-250
    assert np.max(np.abs(p - exact)[seen] / exact[seen]) < 1e-13


def _off_diagonal_rates(A):
    coo = sp.coo_matrix(A)
    off = coo.row != coo.col
    return coo.col[off], coo.row[off], coo.data[off]
