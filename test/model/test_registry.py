"""The registry of model families and model types (model/registry.py): one vocabulary, and
rows whose capabilities agree with what the networks they build do."""

from __future__ import annotations

import pytest
import torch

from depth_pro_ros.model import FAMILIES, KINDS, MODEL_TYPES, ModelInfo, recipe_for, registry
from depth_pro_ros.model.stand_in import STAND_IN_TYPES, random_model


def test_one_vocabulary():
    assert FAMILIES == ("depth_pro", "depth_anything", "depth_anything_3")
    assert MODEL_TYPES[0] == "auto" and set(STAND_IN_TYPES) == set(MODEL_TYPES[1:])
    for name in MODEL_TYPES[1:]:
        row = registry.model_type(name)
        assert row.family in FAMILIES and row.kind in KINDS and row.text
    assert registry.model_type("auto") is None and registry.model_type(None) is None
    with pytest.raises(ValueError, match="unknown model_type 'depth'; use one of auto, "):
        registry.model_type("depth")


@pytest.mark.parametrize("name", STAND_IN_TYPES)
def test_capabilities_agree_with_the_recipe(name):
    row = registry.model_type(name)
    model = random_model(name, "tiny")
    family = registry.family_of(model)
    assert family.name == row.family and registry.family_of(model.config) is family
    assert row.agrees(model.config)
    info = recipe_for(model).info
    assert isinstance(info, ModelInfo) and info.family == row.family
    assert (info.kind, info.needs_prompt, info.needs_focal, info.has_fov_head) == (
        row.kind, row.prompt, row.needs_focal, row.fov_head)
    assert info.description.startswith(row.text.split(",")[0])


def test_a_foreign_network_has_no_family():
    with pytest.raises(TypeError, match="not a model or config of this project: Linear"):
        recipe_for(torch.nn.Linear(2, 2))


def test_the_catch_all_family_is_asked_last():
    assert registry.families()[-1].catch_all
    assert sum(f.catch_all for f in registry.families()) == 1
