import pytest

from cascor.config import PRESETS, CascorConfig, preset
from cascor.errors import ConfigError


def test_json_round_trip_for_every_preset():
    for name, cfg in PRESETS.items():
        assert CascorConfig.from_json(cfg.to_json()) == cfg, name


def test_presets_name_the_published_parameter_sets():
    c = preset("cascor1c")
    assert (c.output_epsilon, c.input_epsilon, c.output_patience, c.score_threshold, c.pool_size) == (0.35, 1.0, 8, 0.35, 8)
    s = preset("fahlman-spirals")
    assert (s.output_epsilon, s.input_epsilon, s.output_patience, s.score_threshold) == (1.0, 100.0, 12, 0.4)
    assert s.candidate_activations == ("symmetric_sigmoid",) and s.pool_size == 8
    f = preset("fann-cascade2")
    assert f.pool_size == 80 and f.candidate_score == "cascade2" and len(f.candidate_activations) == 10


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"output_epsilon": -1.0}, "'output_epsilon' parameter must be > 0; got -1.0"),
        ({"pool_size": 0}, "'pool_size' parameter must be > 0"),
        ({"pool_size": 2.5}, "'pool_size' parameter must be an integer"),
        ({"candidate_activations": ("os.system",)}, "names from"),
        ({"output_activation": "gaussian"}, "'output_activation' parameter must be one of"),
        ({"input_decay": float("nan")}, "finite number"),
        ({"candidate_steepnesses": (0.0,)}, "positive finite"),
    ],
)
def test_invalid_values_name_the_field(changes, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        preset("cascor1c").replace(**changes)


def test_overrides_parse_by_type_and_reject_unknown_keys():
    cfg = preset("cascor1c").with_overrides(["pool_size=16", "input_epsilon=2.5", "candidate_activations=gaussian,tanh"])
    assert cfg.pool_size == 16 and cfg.input_epsilon == 2.5 and cfg.candidate_activations == ("gaussian", "tanh")
    with pytest.raises(ConfigError, match="unknown config key 'pool'"):
        preset("cascor1c").with_overrides(["pool=3"])
    with pytest.raises(ConfigError, match="cannot be parsed"):
        preset("cascor1c").with_overrides(["pool_size=many"])
    with pytest.raises(ConfigError, match="unknown preset 'nope'"):
        preset("nope")
    with pytest.raises(ConfigError, match="unknown config key"):
        CascorConfig.from_dict({"bogus": 1})


def test_candidate_plan_groups_types_and_cycles_steepness():
    cfg = preset("fann-cascade2")
    plan = cfg.candidate_plan()
    assert len(plan) == 80
    names = [a for a, _ in plan]
    assert names == sorted(names, key=cfg.candidate_activations.index)
    assert {s for _, s in plan} == {0.25, 0.5, 0.75, 1.0}
    assert sum(1 for a, s in plan if a == "tanh" and s == 0.5) == 2
