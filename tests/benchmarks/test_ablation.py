"""The architecture ablation's variant names (benchmarks/ablation.py) and its BD summary."""

from __future__ import annotations

import json

import pytest

from loe_codec.config import preset
from support import load_script


@pytest.fixture(scope="module")
def ablation():
    return load_script("benchmarks/ablation.py")


@pytest.fixture(scope="module")
def base():
    return preset("balanced")


@pytest.mark.parametrize("name, field, value", [
    ("w32", "width", 32),
    ("depth4", "banks", (1, 2, 2, 1)),
    ("depth6", "banks", (1, 2, 2, 2, 2, 1)),
    ("banks1-2-2-4-1", "banks", (1, 2, 2, 4, 1)),
    ("pe8", "pe_frequencies", 8),
    ("act-relu", "activation", "relu"),
    ("act-gelu", "activation", "gelu"),
    ("w0-20", "sine_w0", 20.0),
    ("w0-7.5", "sine_w0", 7.5),
    ("linear", "blend", "linear"),
    ("fine_to_coarse", "arrangement", "fine_to_coarse"),
    ("uniform_fine", "arrangement", "uniform_fine"),
    ("subdivide3", "subdivide", 3),
])
def test_one_change_sets_one_field(ablation, base, name, field, value):
    cfg = ablation.variant(base, name)
    assert getattr(cfg.model, field) == value
    others = {k: v for k, v in vars(base.model).items() if k != field}
    assert {k: v for k, v in vars(cfg.model).items() if k != field} == others
    assert cfg.preset == name and cfg.fit == base.fit and cfg.quant == base.quant


def test_balanced_is_the_base_and_changes_combine(ablation, base):
    assert ablation.variant(base, "balanced").model == base.model
    both = ablation.variant(base, "w32+linear+pe6").model
    assert (both.width, both.blend, both.pe_frequencies, both.banks) == (32, "linear", 6, base.model.banks)


def test_mlp_matches_the_parameters_of_the_named_variant(ablation, base):
    for sized in ("balanced", "w32", "depth6", "banks1-2-2-4-1"):
        target = ablation.variant(base, sized).model
        mlp = ablation.variant(base, "mlp" if sized == "balanced" else f"mlp-{sized}").model
        assert set(mlp.banks) == {1} and mlp.layers == target.layers
        assert mlp.parameter_count() <= target.parameter_count()
        wider = type(mlp)(**{**vars(mlp), "width": mlp.width + 1})
        assert wider.parameter_count() > target.parameter_count()


@pytest.mark.parametrize("name", ["w", "depth1", "banks2", "act-tanh", "pe-1", "spline", "w32+", "subdivide0"])
def test_bad_names_are_refused(ablation, base, name):
    """Unknown changes, and known ones the config refuses (UsageError is a ValueError)."""
    with pytest.raises(ValueError):
        ablation.variant(base, name)


RUN = {"date": "d", "machine": "m", "command": "c", "preset": "balanced", "steps": 4, "qat_steps": 2}


def rows(name, shift, image="a", params=10):
    """Three (slope, bpp, PSNR) rows of a made-up curve, ``shift`` dB above the anchor's."""
    return [{"image": image, "variant": name, "slope": s, "bpp": b, "psnr": p + shift, "seconds": 1.0,
             "parameters_per_tile": params} for s, b, p in [(1e-2, 0.4, 30.0), (1e-3, 0.6, 32.0), (1e-4, 0.8, 33.0)]]


def test_summary_compares_with_references_and_the_own_mlp(ablation, tmp_path):
    all_rows = rows("balanced", 0) + rows("mlp", -0.5) + rows("w32", 0.5, params=30) + rows("mlp-w32", 0.2, params=30)
    summary = ablation.summarize(all_rows, ["balanced", "mlp"], "pchip")
    assert set(summary["w32"]["vs"]) == {"balanced", "mlp", "mlp-w32"}
    assert set(summary["balanced"]["vs"]) == {"mlp"} and summary["balanced"]["matched_mlp"] == "mlp"
    assert summary["mlp-w32"]["matched_mlp"] is None
    assert summary["w32"]["vs"]["balanced"]["bd_psnr"] == [pytest.approx(0.5)]
    assert summary["w32"]["vs"]["balanced"]["bd_rate"][0] < 0
    ablation.write_report(tmp_path / "r.json", RUN, all_rows, ["balanced", "mlp"], "pchip")
    assert json.loads((tmp_path / "r.json").read_text())["summary"]["mlp-w32"]["vs"]["mlp"]["bd_psnr"][0] > 0
    report = (tmp_path / "r.md").read_text()
    assert "| w32 | 30 |" in report and "slopes 0.0001, 0.001, 0.01." in report


def test_merge_joins_the_rows_of_runs(ablation, tmp_path):
    for image in ("a", "b"):
        ablation.write_report(tmp_path / f"{image}.json", {**RUN, "command": image},
                              rows("balanced", 0, image) + rows("mlp", -1.0, image), ["balanced"], "pchip")
    assert ablation.main(["--merge", str(tmp_path / "a.json"), str(tmp_path / "b.json"),
                          "--references", "balanced", "--bd-method", "pchip", "--out", str(tmp_path / "ab.json")]) == 0
    joined = json.loads((tmp_path / "ab.json").read_text())
    assert joined["command"] == "a; b" and len(joined["rows"]) == 12
    assert joined["summary"]["mlp"]["vs"]["balanced"]["bd_psnr"] == [pytest.approx(-1.0)] * 2


def test_the_matched_mlp_is_the_own_else_the_nearest_in_parameters(ablation):
    params = {"balanced": 6361, "mlp": 6345, "mlp-w16": 3453, "mlp-w32": 13085, "depth4": 4403,
              "banks1-2-2-4-1": 12169}
    assert ablation.matched_mlp("depth4", params) == "mlp-w16"
    assert ablation.matched_mlp("banks1-2-2-4-1", params) == "mlp-w32"
    assert ablation.matched_mlp("balanced", params) == "mlp"
    assert ablation.matched_mlp("w16", {**params, "w16": 3475, "mlp-x": 3475}) == "mlp-w16"
    assert ablation.matched_mlp("mlp-w16", params) is None
    assert ablation.matched_mlp("w16", {"w16": 1}) is None
