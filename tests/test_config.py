import json

import pytest

from core.config import Config, config_diff, load_config, parse_config
from core.errors import ConfigError
from tests.conftest import REPO


def test_the_shipped_config_is_valid_and_keeps_the_spec_defaults():
    config = load_config(REPO / "config.json")
    assert (config.eval_steps, config.num_eval_samples, config.eval_max_tokens) == (50, 4, 2048)
    sc = config.self_correction
    assert (sc.enabled, sc.auto_queue, sc.min_examples, sc.generation_interval) == (True, True, 10, 500)
    assert config == Config(), "config.json should mirror the defaults"


def test_every_problem_is_reported_at_once_with_its_key_path():
    with pytest.raises(ConfigError) as e:
        parse_config({"training": {"learning_rate": -1, "batch_size": 0, "lr": 1}, "bogus": True,
                      "model": {"use_chat_template": "sometimes"}})
    problems = e.value.problems
    assert "training.learning_rate: must be > 0.0 (got -1)" in problems
    assert "training.batch_size: must be > 0 (got 0)" in problems
    assert any(p.startswith("training.lr: unknown key") for p in problems)
    assert any(p.startswith("bogus: unknown key") for p in problems)
    assert any(p.startswith("model.use_chat_template: must be one of") for p in problems)
    assert len(problems) == 5


def test_invalid_json_names_the_line(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{\n  "eval_steps": 5,\n  oops\n}')
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert "line 3" in str(e.value) and str(path) in str(e.value)


def test_a_missing_config_file_means_defaults(tmp_path):
    assert load_config(tmp_path / "absent.json") == Config()


def test_every_field_has_a_description():
    def walk(model):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"
            if isinstance(field.annotation, type) and issubclass(field.annotation, Config.__mro__[1]):
                walk(field.annotation)
    walk(Config)


def test_config_diff_lists_changed_keys():
    new = parse_config({"self_correction": {"enabled": False}, "training": {"learning_rate": 1e-3}})
    assert config_diff(Config(), new) == ["self_correction.enabled: True -> False",
                                          "training.learning_rate: 0.0002 -> 0.001"]


def test_4bit_needs_a_half_precision(tmp_path):
    with pytest.raises(ConfigError) as e:
        parse_config({"model": {"load_in_4bit": True}, "training": {"precision": "fp32"}})
    assert "model.load_in_4bit" in str(e.value)


def test_a_key_that_moved_to_experimental_names_its_new_place():
    with pytest.raises(ConfigError) as e:
        parse_config({"self_correction": {"confirm_right_answers": True}, "training": {"preference_weight": 1.0}})
    assert e.value.problems == [
        'self_correction.confirm_right_answers: moved to experimental.confirm_right_answers; '
        'put it in the "experimental" section',
        'training.preference_weight: moved to experimental.preference_weight; put it in the "experimental" section']
    assert parse_config({"experimental": {"confirm_right_answers": True}}).experimental.confirm_right_answers


def test_the_readmes_config_table_is_the_one_the_models_generate():
    from core.config_table import readme_table, table

    assert readme_table((REPO / "docs" / "configuration.md").read_text(encoding="utf-8")) == table(), \
        "run: python -m core.config_table --write"
    keys = {line.split("`")[1] for line in table().splitlines()[2:]}
    assert {"eval_steps", "training.promotion.tolerance", "experimental.preference_beta"} <= keys


def test_the_demo_config_is_valid_and_closes_the_loop_within_one_bundled_file():
    demo = load_config(REPO / "examples" / "demo_config.json")
    trained = 100 - 5 - 9  # examples/word_problems.jsonl less the gate's and the validation pool's share
    steps = trained // demo.training.batch_size
    assert demo.eval_steps < demo.self_correction.generation_interval <= steps
