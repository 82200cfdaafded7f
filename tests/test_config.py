"""Validation of TOML run configurations (fokkerplanck.config)."""

import numpy as np
import pytest

from fokkerplanck import config as C
from fokkerplanck.config import ConfigError


def _err(raw) -> str:
    with pytest.raises(ConfigError) as e:
        C.validate(raw)
    msg = str(e.value)
    assert msg.startswith("config error:") and "\n" not in msg
    return msg


@pytest.mark.parametrize("command", sorted(C.DEFAULTS))
def test_builtin_defaults_validate_and_build(command):
    cfg = C.load_config(None, command)
    prob = C.build_problem(cfg)
    assert prob.grid.ndim == len(cfg["grid"]["axes"])


def test_unknown_key_suggests_the_right_one():
    msg = _err({"noise": {"kind": "hessian-aligned", "delt_s": 1e-3}})
    assert "[noise]" in msg and "'delt_s'" in msg and "did you mean 'delta_s'" in msg


def test_unknown_section_and_kind():
    assert "did you mean [noise]" in _err({"noize": {"kind": "constant"}})
    assert "did you mean 'quadratic'" in _err({"landscape": {"kind": "quadratik"}})


def test_wrong_types_name_the_key():
    assert "[noise] T" in _err({"noise": {"kind": "isotropic", "T": "hot"}})
    assert "[noise] T" in _err({"noise": {"kind": "isotropic", "T": True}})  # bools are not numbers
    assert "[particles] n_particles" in _err({"particles": {"n_particles": 1.5, "dt": 0.1, "t_end": 1.0}})
    assert "[grid] axes" in _err({"grid": {"axes": [[-1, 1, "ten"]]}})
    assert "[grid] axes" in _err({"grid": {"axes": [[1, -1, 10]]}})
    assert "[grid] bc" in _err({"grid": {"axes": [[-1, 1, 10]], "bc": "sticky"}})


def test_missing_required_parameter():
    msg = _err({"landscape": {"kind": "quadratic"}})
    assert "missing required key 'A'" in msg and "quadratic" in msg
    assert "'kind'" in _err({"noise": {"D": 1.0}})


def test_non_psd_and_mismatched_tensors():
    grid = {"axes": [[-1, 1, 8], [-1, 1, 8]]}
    msg = _err({"grid": grid, "noise": {"kind": "constant", "D": [[1.0, 2.0], [2.0, 1.0]]}})
    assert "[noise] D" in msg and "positive semi-definite" in msg
    assert "symmetric" in _err({"grid": grid, "noise": {"kind": "constant", "D": [[1.0, 0.1], [0.2, 1.0]]}})
    assert "3x3" in _err({"grid": grid, "noise": {"kind": "constant", "D": [1.0, 1.0, 1.0]}})
    assert "square" in _err({"noise": {"kind": "constant", "D": [[1.0, 0.0]]}})


def test_dimension_and_method_cross_checks():
    grid = {"axes": [[-1, 1, 8], [-1, 1, 8], [-1, 1, 8]]}
    assert "2-dimensional degenerate-valley" in _err({"grid": grid, "landscape": {"kind": "degenerate-valley"}})
    assert "needs 'eta'" in _err({"particles": {"method": "sgd", "t_end": 1.0}})
    assert "needs a time step 'dt'" in _err({"particles": {"method": "sde", "t_end": 1.0}})
    assert "'sgd'" in _err({"particles": {"method": "sde", "dt": 0.1, "t_end": 1.0, "eta": 0.1}})


def test_garbage_toml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[grid\naxes = = 3\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        C.load_config(bad, "steady")
    with pytest.raises(ConfigError, match="not found"):
        C.load_config(tmp_path / "nope.toml", "steady")


def test_sections_are_taken_whole_and_defaults_filled(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text(
        '[landscape]\nkind = "quadratic"\nA = [[2.0, 0.5], [0.5, 1.0]]\n[noise]\nkind = "isotropic"\nT = 0.1\n'
    )
    cfg = C.load_config(f, "steady")
    assert cfg["landscape"] == {"kind": "quadratic", "A": [[2.0, 0.5], [0.5, 1.0]]}  # no stray 'lambdas'
    assert cfg["grid"] == C.validate({"grid": C.DEFAULTS["steady"]["grid"]})["grid"]
    assert cfg["solver"]["method"] == "auto" if "solver" in cfg else True
    land = C.build_landscape(cfg)
    np.testing.assert_allclose(land.A, [[2.0, 0.5], [0.5, 1.0]])


def test_quick_shrinks_the_run():
    cfg = C.load_config(None, "demo", quick=True)
    assert all(a[2] <= C.QUICK["grid_cells"] for a in cfg["grid"]["axes"])
    assert cfg["particles"]["n_particles"] <= C.QUICK["particles"]["n_particles"]


def test_to_toml_round_trip():
    for command in C.DEFAULTS:
        cfg = C.load_config(None, command)
        assert C.validate(C.parse_toml(C.to_toml(cfg))) == cfg


def test_set_path_revalidates():
    cfg = C.load_config(None, "sweep")
    new = C.set_path(cfg, "noise.delta_s", 2e-3)
    assert new["noise"]["delta_s"] == 2e-3 and cfg["noise"]["delta_s"] != 2e-3
    with pytest.raises(ConfigError, match=r"\[noise\] delta_s"):
        C.set_path(cfg, "noise.delta_s", -1.0)


def test_builders_report_constructor_errors_as_config_errors():
    cfg = C.validate(
        {
            "grid": {"axes": [[-1, 1, 8], [-1, 1, 8]]},
            "landscape": {"kind": "high-dim-valley", "n_flat": 1, "n_sharp": 1, "lambdas": [[1.0], [1.0]]},
            "noise": {"kind": "isotropic", "T": 0.1},
        }
    )
    with pytest.raises(ConfigError, match=r"^config error: \[landscape\]"):
        C.build_problem(cfg)


def test_frames_and_rotated_landscapes_from_a_config():
    """[grid] rotation / frame / origin make an aligned frame; the same keys in [landscape] place the landscape
    (a rotated valley). The same angle in both gives the unrotated problem's answer to round-off."""
    base = {
        "landscape": {"kind": "degenerate-valley", "lambdas": [8.0, -2.0, 1.0], "eps": 1e-3},
        "noise": {"kind": "hessian-aligned", "delta_s": 3e-3},
        "grid": {"axes": [[-2.0, 2.0, 60], [-0.6, 0.6, 24]]},
    }
    import copy

    import fokkerplanck as fp

    turned = copy.deepcopy(base)
    turned["grid"]["rotation"] = 0.5
    turned["landscape"]["rotation"] = 0.5
    prob = C.build_problem(C.validate(turned))
    assert prob.grid.frame == fp.Frame.rotation(0.5) and prob.landscape.kind == "transformed"
    kw = dict(estimate_error=False, warn=False)
    a = fp.steady_state(prob, **kw)
    b = fp.steady_state(C.build_problem(C.validate(base)), **kw)
    assert np.abs(a.values - b.values).max() < 1e-8 * b.values.max()
    sheared = copy.deepcopy(base)
    sheared["grid"]["frame"] = [[1.0, 0.2], [0.0, 1.0]]
    sheared["grid"]["origin"] = [0.1, 0.0]
    assert C.build_problem(C.validate(sheared)).grid.frame == fp.Frame([[1.0, 0.2], [0.0, 1.0]], (0.1, 0.0))


@pytest.mark.parametrize(
    "grid,match",
    [
        ({"axes": [[-1, 1, 8], [-1, 1, 8]], "rotation": 0.1, "frame": [[1, 0], [0, 1]]}, "not both"),
        ({"axes": [[-1, 1, 8], [-1, 1, 8], [-1, 1, 8]], "rotation": 0.1}, "rotation is for 2D"),
        ({"axes": [[-1, 1, 8], [-1, 1, 8]], "origin": [0, 0]}, "origin needs"),
        ({"axes": [[-1, 1, 8], [-1, 1, 8]], "frame": [[1, 2], [2, 4]]}, "invertible"),
        ({"axes": [[-1, 1, 8], [-1, 1, 8]], "frame": [1, 2, 3]}, "2x2"),
    ],
)
def test_bad_frames_are_one_line(grid, match):
    cfg = C.validate(
        {
            "grid": grid,
            "landscape": {"kind": "quadratic", "A": [1.0] * len(grid["axes"])},
            "noise": {"kind": "isotropic", "T": 0.1},
        }
    )
    with pytest.raises(ConfigError, match=match) as e:
        C.build_problem(cfg)
    assert str(e.value).startswith("config error: [grid]") and "\n" not in str(e.value)
