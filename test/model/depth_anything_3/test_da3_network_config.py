"""DepthAnything3Config: the presets against the released package's own yaml files, the
JSON round trip, and the configs it refuses."""

from __future__ import annotations

import pytest

from depth_pro_ros.model.common.errors import ConfigLimitError
from depth_pro_ros.model.depth_anything_3.config import (
    PRESETS,
    DepthAnything3Config,
    NestedDepthAnything3Config,
    preset,
)

cfg = pytest.importorskip("depth_anything_3.cfg")
registry = pytest.importorskip("depth_anything_3.registry")

HEAD_CLASSES = {"DualDPT": "dualdpt", "DPT": "dpt"}


def _check_against_yaml(config: DepthAnything3Config, yaml) -> None:
    """Every fact the yaml states, in this config's terms (see config.py's table)."""
    net, head = yaml.net, yaml.head
    assert config.hook_block_ids == tuple(net.out_layers)
    assert (config.alt_start, config.rope_start, config.qknorm_start) == (
        net.alt_start, net.rope_start, net.qknorm_start)
    assert config.cat_token == net.cat_token
    assert config.ffn == ("swiglu" if net.name == "vitg" else "mlp")  # DinoV2's choice
    assert config.head == HEAD_CLASSES[head["__object__"].name]
    assert config.head_dim_in == head.dim_in
    assert (config.output_dim, config.fusion_features) == (head.output_dim, head.features)
    assert config.neck_dims == tuple(head.out_channels)
    assert config.sky == (config.head == "dpt")  # the package's DPT has its sky head on
    assert config.camera == ("cam_enc" in yaml) == ("cam_dec" in yaml)
    if config.camera:
        assert config.embed_dim == yaml.cam_enc.dim_out
        assert config.head_dim_in == yaml.cam_dec.dim_in
    assert config.default_input_size == 518  # the package's img_size


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_states_the_released_yaml(name):
    yaml = cfg.load_config(registry.MODEL_REGISTRY[name])
    config = preset(name)
    if isinstance(config, NestedDepthAnything3Config):
        _check_against_yaml(config.anyview, yaml.anyview)
        _check_against_yaml(config.metric, yaml.metric)
        assert config.metric.metric and not config.anyview.metric
    else:
        _check_against_yaml(config, yaml)
        # The weights cannot tell mono from metric: the preset's name does.
        assert config.metric == (name == "da3metric-large")


@pytest.mark.parametrize("name", list(PRESETS))
def test_json_round_trip(name):
    config = preset(name)
    assert type(config).from_dict(config.to_dict()) == config


@pytest.mark.parametrize(("change", "message"), [
    ({"embed_dim": 386}, "divisible by num_heads"),
    ({"embed_dim": 72, "num_heads": 4}, "multiple of 4"),
    ({"hook_block_ids": (1, 3, 2, 4)}, "increasing"),
    ({"alt_start": 12}, "not below depth"),
    ({"alt_start": 0}, "at least 1"),
    ({"ffn": "relu"}, "ffn must be"),
    ({"head": "dpt3"}, "head must be"),
    ({"sky": True}, "no sky head"),
    ({"alt_start": -1}, "camera needs alt_start"),
    ({"camera_heads": 5}, "camera_heads"),
])
def test_refuses_inconsistent_configs(change, message):
    with pytest.raises(ValueError, match=message):
        DepthAnything3Config.from_preset("da3-small", **change)


def test_refuses_bad_types_and_unknown_names():
    with pytest.raises(ConfigLimitError, match="alt_start"):
        DepthAnything3Config.from_preset("da3-small", alt_start=-2)
    with pytest.raises(ConfigLimitError, match="cat_token"):
        DepthAnything3Config.from_preset("da3-small", cat_token=1)
    with pytest.raises(ValueError, match="unknown config keys"):
        DepthAnything3Config.from_dict({"out_layers": [5, 7, 9, 11]})
    with pytest.raises(ValueError, match="known: da3-small"):
        preset("da3-tiny")
    with pytest.raises(ValueError, match="two networks"):
        DepthAnything3Config.from_preset("da3nested-giant-large")
    with pytest.raises(ValueError, match="'anyview' and 'metric'"):
        NestedDepthAnything3Config.from_dict({"anyview": {}})
