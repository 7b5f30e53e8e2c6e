from pathlib import Path

import pytest

from deepresearch.config import load_settings
from deepresearch.errors import ConfigError


def test_flags_win_over_env_over_file(tmp_path):
    config = tmp_path / "deepresearch.toml"
    config.write_text(
        'model = "from-file"\nmax_steps = 11\nsearch = "local"\n[prices."m"]\ninput = 1.0\noutput = 2.0\n'
    )
    env = {"DEEPRESEARCH_MAX_STEPS": "22", "DEEPRESEARCH_BASE_URL": "http://env:1/v1"}
    settings = load_settings({"max_steps": 33, "model": None}, env=env, config_file=config)
    assert settings.max_steps == 33
    assert settings.model == "from-file"
    assert settings.base_url == "http://env:1/v1"
    assert settings.prices["m"].output == 2.0
    assert load_settings({}, env=env, config_file=config).max_steps == 22
    assert load_settings({}, env={}, config_file=config).max_steps == 11


def test_openai_fallbacks_and_precedence():
    env = {"OPENAI_API_KEY": "sk-openai", "OPENAI_BASE_URL": "http://openai-compat/v1", "OPENAI_MODEL": "m1"}
    settings = load_settings({}, env=env)
    assert settings.api_key is not None and settings.api_key.get_secret_value() == "sk-openai"
    assert settings.base_url == "http://openai-compat/v1" and settings.model == "m1"
    env["DEEPRESEARCH_API_KEY"] = "sk-dr"
    assert load_settings({}, env=env).api_key.get_secret_value() == "sk-dr"


def test_openai_key_alone_means_openai_api_but_our_key_does_not():
    assert load_settings({}, env={"OPENAI_API_KEY": "sk"}).base_url == "https://api.openai.com/v1"
    assert load_settings({}, env={"DEEPRESEARCH_API_KEY": "sk"}).base_url is None


def test_every_field_has_an_env_twin(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings(
        {},
        env={
            "DEEPRESEARCH_SEARCH": "local",
            "DEEPRESEARCH_INDEX": "/tmp/x.sqlite",
            "DEEPRESEARCH_MAX_COST": "0.5",
            "DEEPRESEARCH_STREAM": "false",
            "DEEPRESEARCH_TOOL_MODE": "text",
            "DEEPRESEARCH_CONTEXT_UPPER": "1000",
            "DEEPRESEARCH_CONTEXT_LOWER": "500",
        },
    )
    assert settings.index == Path("/tmp/x.sqlite") and settings.max_cost == 0.5 and settings.stream is False
    assert settings.tool_mode == "text" and settings.context_upper == 1000


def test_bad_values_name_their_origin(tmp_path):
    with pytest.raises(ConfigError, match="DEEPRESEARCH_MAX_STEPS"):
        load_settings({}, env={"DEEPRESEARCH_MAX_STEPS": "many"})
    with pytest.raises(ConfigError, match=r"--tool-mode"):
        load_settings({"tool_mode": "telepathy"}, env={})
    bad = tmp_path / "bad.toml"
    bad.write_text("max_stepz = 3\n")
    with pytest.raises(ConfigError, match="unknown setting"):
        load_settings({}, env={}, config_file=bad)
    broken = tmp_path / "broken.toml"
    broken.write_text("max_steps = = 3\n")
    with pytest.raises(ConfigError, match=r"broken\.toml"):
        load_settings({}, env={}, config_file=broken)
    with pytest.raises(ConfigError, match="context_lower"):
        load_settings({"context_upper": 100, "context_lower": 200}, env={})


def test_key_never_in_public_settings():
    settings = load_settings({"api_key": "sk-secret-123"}, env={})
    public = settings.public()
    assert "sk-secret-123" not in repr(public) and "sk-secret-123" not in repr(settings)
    assert public["keys_set"] == ["api_key"]


def test_config_file_discovery(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "deepresearch.toml").write_text("max_steps = 7\n")
    assert load_settings({}, env={}).max_steps == 7
    other = tmp_path / "other.toml"
    other.write_text("max_steps = 8\n")
    assert load_settings({}, env={"DEEPRESEARCH_CONFIG": str(other)}).max_steps == 8
    with pytest.raises(ConfigError, match="not found"):
        load_settings({}, env={}, config_file=tmp_path / "missing.toml")


def test_provider_keys_read_their_usual_variables_and_stay_secret():
    env = {
        "TAVILY_API_KEY": "tvly-1",
        "DEEPRESEARCH_BRAVE_API_KEY": "b-2",
        "BRAVE_API_KEY": "b-ignored",
        "STEP_API_KEY": "s-3",
        "DEEPRESEARCH_FETCH_ALLOWLIST": "127.0.0.1, 10.0.0.0/8,intranet.example",
    }
    settings = load_settings({}, env=env)
    assert settings.tavily_api_key.get_secret_value() == "tvly-1"
    assert settings.brave_api_key.get_secret_value() == "b-2"
    assert settings.stepfun_search_api_key.get_secret_value() == "s-3"
    assert settings.fetch_allowlist == ["127.0.0.1", "10.0.0.0/8", "intranet.example"]
    public = settings.public()
    assert "tvly-1" not in repr(public) and "b-2" not in repr(public) and "s-3" not in repr(public)
    assert public["keys_set"] == ["brave_api_key", "stepfun_search_api_key", "tavily_api_key"]


def test_local_model_settings_fit_its_context_window():
    settings = load_settings({"model": "local"}, env={})
    assert settings.is_local and settings.effective_tool_mode == "json"
    local = settings.for_local_model()
    assert local.max_output_tokens == 1024 and local.max_retries == 1
    assert local.context_upper + local.max_output_tokens < settings.local_context
    assert local.context_lower < local.context_upper
    remote = load_settings({"model": "gpt-4o", "base_url": "http://x/v1"}, env={})
    assert remote.for_local_model() is remote and remote.effective_tool_mode == "native"
    assert load_settings({"model": "local", "tool_mode": "text"}, env={}).effective_tool_mode == "text"
