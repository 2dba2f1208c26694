import dataclasses

import pytest

from loe_codec import errors
from loe_codec.config import PRESETS, CodecConfig, FitConfig, ModelConfig, TileConfig, mlp_baseline, preset
from loe_codec.errors import UsageError


def test_layer_shapes_and_parameter_count():
    cfg = ModelConfig(dims=2, width=10, banks=(1, 3, 2), pe_frequencies=2, out_channels=4)
    assert cfg.in_features == 10
    assert cfg.layer_shapes() == [(10, 10), (10, 10), (10, 4)]
    assert cfg.bank_counts() == [1, 9, 4]
    assert cfg.parameter_count() == (10 * 10 + 10) + (9 * 100 + 10) + (4 * 40 + 4)
    assert ModelConfig(dims=3, banks=(2, 2)).bank_counts() == [8, 8]


@pytest.mark.parametrize("kwargs", [dict(dims=1), dict(width=0), dict(banks=(1,)), dict(banks=(1, 0)),
                                    dict(arrangement="random"), dict(blend="cubic"), dict(activation="tanh"),
                                    dict(subdivide=0), dict(pe_frequencies=-1), dict(out_channels=0)])
def test_model_config_validation(kwargs):
    with pytest.raises(errors.UsageError):
        ModelConfig(**kwargs)


@pytest.mark.parametrize("kwargs", [dict(steps=-1), dict(samples_per_tile=0), dict(tiles_per_batch=0),
                                    dict(learning_rate=0.0), dict(hold_fraction=-0.1), dict(hold_fraction=1.0)])
def test_fit_config_validation(kwargs):
    with pytest.raises(errors.UsageError):
        FitConfig(**kwargs)


def test_hold_fraction_is_stored_only_where_set():
    assert "hold_fraction" not in CodecConfig().to_dict()["fit"]  # files read by decoders from before it
    held = dataclasses.replace(CodecConfig(), fit=FitConfig(hold_fraction=0.25))
    assert held.to_dict()["fit"]["hold_fraction"] == 0.25
    assert CodecConfig.from_dict(held.to_dict()) == held


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_round_trip_through_dicts(name):
    cfg = preset(name)
    assert cfg.preset == name
    assert CodecConfig.from_dict(cfg.to_dict()) == cfg


def test_unknown_preset_and_bad_dicts():
    with pytest.raises(errors.UsageError):
        preset("ultra")
    d = PRESETS["fast"].to_dict()
    d["model"]["colour"] = 1
    with pytest.raises(ValueError):
        CodecConfig.from_dict(d)
    d = PRESETS["fast"].to_dict()
    del d["quant"]
    with pytest.raises(ValueError):
        CodecConfig.from_dict(d)


def test_with_overrides():
    cfg = PRESETS["balanced"]
    out = cfg.with_overrides(steps=7, tile=8, seed=3)
    assert (out.fit.steps, out.fit.seed, out.tile.size) == (7, 3, 8)
    assert 2 * out.tile.margin < 8
    assert cfg.with_overrides() == cfg
    assert dataclasses.replace(cfg, preset="x").with_overrides(steps=1).preset == "x"
    with pytest.raises(errors.UsageError):
        cfg.with_overrides(tile=4)
    assert TileConfig(size=8, margin=3).margin == 3


def test_error_hierarchy_and_exit_codes():
    assert issubclass(errors.FormatError, errors.UsageError)
    assert issubclass(errors.UsageError, ValueError) and issubclass(errors.UsageError, errors.LoeError)
    assert issubclass(errors.CodecRuntimeError, RuntimeError)
    assert errors.UsageError.exit_code == errors.FormatError.exit_code == 2
    assert errors.CodecRuntimeError.exit_code == 1


# --- the quality ladder --------------------------------------------------------------------------------

def test_quality_ladder_keeps_the_preset_network_up_to_60():
    from loe_codec.config import config_for_quality, preset, slope_for_quality
    for name in ("fast", "balanced", "best"):
        for q in (0, 20, 50, 60):
            cfg = config_for_quality(preset(name), q)
            assert cfg.model == preset(name).model
            assert cfg.quant.slope == pytest.approx(slope_for_quality(q), rel=1e-5)


def test_quality_ladder_widens_balanced_and_best_above_60_with_falling_slopes():
    from loe_codec.config import QUALITY_LADDERS, config_for_quality, preset
    for name in ("balanced", "best"):
        rung = QUALITY_LADDERS[name][0]
        configs = [config_for_quality(preset(name), q) for q in range(61, 101)]
        assert all(c.model.width == rung.width > preset(name).model.width for c in configs)
        assert all(c.model.banks == preset(name).model.banks and c.fit == preset(name).fit for c in configs)
        slopes = [c.quant.slope for c in configs]
        assert slopes[0] == pytest.approx(rung.slopes[0], rel=1e-5)
        assert slopes[-1] == pytest.approx(rung.slopes[1], rel=1e-5)
        assert all(a > b for a, b in zip(slopes, slopes[1:]))
    fast = config_for_quality(preset("fast"), 90)  # no ladder for fast
    assert fast.model == preset("fast").model


def test_quality_ladder_leaves_custom_networks_alone():
    from loe_codec.config import config_for_quality, preset
    overridden = preset("balanced").with_overrides(steps=100, tile=64)  # same network: still laddered
    assert config_for_quality(overridden, 80).model.width == 32
    own = dataclasses.replace(preset("balanced"), model=dataclasses.replace(preset("balanced").model, width=12))
    assert config_for_quality(own, 80).model.width == 12  # a network of its own is not replaced
    rgba = dataclasses.replace(preset("balanced"), model=dataclasses.replace(preset("balanced").model,
                                                                             out_channels=4))
    assert config_for_quality(rgba, 80).model.width == 32 and config_for_quality(rgba, 80).model.out_channels == 4
    with pytest.raises(errors.UsageError):
        config_for_quality(preset("balanced"), 101)


def test_time_banks_count_and_validate():
    cfg = ModelConfig(dims=3, width=8, banks=(1, 2, 2, 2, 1), time_banks=(1, 1, 1, 2, 1))
    assert cfg.axis_banks(1) == (2, 2, 1) and cfg.axis_banks(3) == (2, 2, 2)
    assert cfg.bank_counts() == [1, 4, 4, 8, 1]
    assert cfg.banked_layers() == [1, 2, 3]
    assert cfg.scales() == ModelConfig(dims=3, width=8, banks=(1, 2, 2, 2, 1)).scales()
    assert ModelConfig(dims=3, banks=(1, 2, 1), time_banks=(1, 1, 1)).parameter_count() == \
        ModelConfig(dims=3, banks=(1, 2, 1)).parameter_count() - 4 * 22 * 22
    for bad in [dict(dims=2, time_banks=(1, 1, 1, 1, 1)), dict(dims=3, time_banks=(1, 1)),
                dict(dims=3, time_banks=(1, 0, 1, 1, 1))]:
        with pytest.raises(UsageError):
            ModelConfig(**bad)
    config = dataclasses.replace(preset("balanced"), model=cfg)
    assert CodecConfig.from_dict(config.to_dict()) == config
    assert mlp_baseline(config).model.time_banks is None
