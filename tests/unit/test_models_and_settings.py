import dataclasses

import pytest

import ragline
from ragline import ConfigurationError, Document, Query, Settings
from ragline.core.ids import chunk_id, content_hash


def test_public_surface_is_exactly_all():
    import types

    public = {
        name
        for name, value in vars(ragline).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType) and name != "annotations"
    } | set(ragline._LAZY)  # imported on first use
    assert public == set(ragline.__all__) - {"__version__"}
    assert {"Engine", "Settings", "RaglineError", "Document", "Query", "Answer"} <= public
    assert all(getattr(ragline, name) is not None for name in ragline.__all__)


def test_chunk_ids_depend_on_tenant_document_and_position_only():
    assert chunk_id("t", "d", 0) == chunk_id("t", "d", 0)
    assert len({chunk_id("t", "d", 0), chunk_id("u", "d", 0), chunk_id("t", "e", 0), chunk_id("t", "d", 1)}) == 4


def test_content_hash_changes_with_the_text():
    assert content_hash("a") != content_hash("b") and content_hash("a") == content_hash("a")


def test_errors_split_into_retryable_and_permanent():
    assert issubclass(ragline.DependencyUnavailable, ragline.RetryableError)
    assert issubclass(ragline.InvalidInput, ragline.PermanentError)
    assert issubclass(ragline.RetryableError, ragline.RaglineError)


def test_messages_carry_a_schema_version_and_round_trip_as_json():
    doc = Document(id="d", text="hello", metadata={"k": 1})
    again = Document.model_validate_json(doc.model_dump_json())
    assert again == doc and again.schema_version == 1


@pytest.mark.parametrize("bad", ["", " ", "a b", "../x", "x" * 200])
def test_a_malformed_tenant_is_rejected(bad):
    with pytest.raises(ValueError, match="tenant"):
        Query(text="q", tenant=bad)


def test_a_blank_query_is_rejected():
    with pytest.raises(ValueError, match="blank"):
        Query(text="   ")


def test_settings_come_from_environment_and_toml(tmp_path, monkeypatch):
    config = tmp_path / "ragline.toml"
    config.write_text('collection = "from_toml"\ntop_k = 7\n')
    monkeypatch.setenv("RAGLINE_TOP_K", "9")
    settings = Settings.load(config)
    assert (settings.collection, settings.top_k) == ("from_toml", 9)


def test_bad_settings_are_a_configuration_error_naming_the_field():
    with pytest.raises(ConfigurationError, match="chunk_overlap"):
        Settings.load(chunk_tokens=50, chunk_overlap=60)


def test_a_missing_config_file_is_a_configuration_error(tmp_path):
    with pytest.raises(ConfigurationError, match="not found"):
        Settings.load(tmp_path / "nope.toml")


def test_hnsw_on_milvus_lite_is_refused_clearly():
    from ragline.adapters.stores.milvus_config import IndexSpec

    with pytest.raises(ConfigurationError, match="FLAT and IVF_FLAT"):
        IndexSpec.of(Settings.load(index="HNSW").store)
    assert IndexSpec.of(Settings.load(milvus_uri="http://h:19530").store).kind == "HNSW"


def test_secrets_come_from_files_in_the_secrets_dir_and_the_environment_wins(tmp_path, monkeypatch):
    (tmp_path / "RAGLINE_JWT_SECRET").write_text("from-a-mounted-secret")
    (tmp_path / "RAGLINE_LLM_API_KEY").write_text("file-key")
    monkeypatch.setenv("RAGLINE_SECRETS_DIR", str(tmp_path))
    monkeypatch.setenv("RAGLINE_LLM_API_KEY", "env-key")
    settings = Settings.load()
    assert settings.jwt_secret == "from-a-mounted-secret"
    assert settings.llm_api_key == "env-key"


def test_an_unknown_bus_url_is_a_configuration_error_naming_the_known_ones():
    from ragline.adapters.buses import build_bus

    with pytest.raises(ConfigurationError, match=r"no bus named 'amqp' \(bus_url\); known: kafka, memory"):
        build_bus(Settings.load(bus_url="amqp://rabbit").bus)


def test_each_port_gets_its_group_of_the_flat_settings():
    """Users set flat names (RAGLINE_MILVUS_URI, llm_url); each port's registry gets its
    group, with the URL or name it chooses by."""
    settings = Settings.load(
        milvus_uri="memory://", milvus_timeout_s=3, bus_url="kafka://b:9092", kafka_linger_ms=7,
        topic_partitions=3, cache_url="redis://r:6379/0", cache_timeout_s=0.5, generator="openai",
        llm_url="http://vllm:8000/v1", llm_batch_max=8, embedder="hashing", embed_batch_size=16,
    )  # fmt: skip
    assert (settings.store.url, settings.store.timeout_s) == ("memory://", 3)
    assert (settings.bus.url, settings.bus.linger_ms, settings.bus.partitions) == ("kafka://b:9092", 7, 3)
    assert (settings.cache.url, settings.cache.timeout_s) == ("redis://r:6379/0", 0.5)
    assert (settings.llm.generator, settings.llm.url, settings.llm.batch_max) == ("openai", "http://vllm:8000/v1", 8)
    assert (settings.embedding.name, settings.embedding.batch_size) == ("hashing", 16)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.store.url = "elsewhere"  # type: ignore[misc]


def test_every_group_field_is_a_setting_and_every_group_builds():
    from ragline.settings import GROUPS

    settings = Settings.load()
    for group, (cls, renames) in GROUPS.items():
        names = [f.name for f in dataclasses.fields(cls)]
        assert set(renames) <= set(names), group  # no rename of a field the group lacks
        assert all(renames.get(n, n) in Settings.model_fields for n in names), group
        assert isinstance(getattr(settings, group), cls)


def test_the_toml_file_takes_sections_per_group_or_flat_names(tmp_path):
    config = tmp_path / "ragline.toml"
    config.write_text(
        'top_k = 7\n[store]\nurl = "http://milvus:19530"\nindex = "HNSW"\n'
        '[llm]\nurl = "http://vllm:8000/v1"\nbatch_max = 16\n[bus]\nurl = "kafka://b:9092"\n'
        "[api]\nport = 9000\nmax_connections = 64\n[limits]\nmax_filter_keys = 3\n"
    )
    settings = Settings.load(config)
    assert (settings.milvus_uri, settings.index, settings.top_k) == ("http://milvus:19530", "HNSW", 7)
    assert (settings.llm.url, settings.llm_batch_max, settings.bus.url) == ("http://vllm:8000/v1", 16, "kafka://b:9092")
    assert (settings.port, settings.http_max_connections, settings.api.max_connections) == (9000, 64, 64)
    assert settings.limits.max_filter_keys == settings.max_filter_keys == 3
    config.write_text('[store]\nuri = "x"\n')
    with pytest.raises(ConfigurationError, match=r"\[store\] has no setting 'uri'; it has: .*url"):
        Settings.load(config)
    config.write_text('milvus_uri = "a"\n[store]\nurl = "b"\n')
    with pytest.raises(ConfigurationError, match=r"milvus_uri is set twice \(also as \[store\] url\)"):
        Settings.load(config)


def test_environment_variables_may_name_a_group_and_its_field(monkeypatch):
    monkeypatch.setenv("RAGLINE_STORE__URL", "http://milvus:19530")
    monkeypatch.setenv("RAGLINE_LLM__BATCH_MAX", "8")
    monkeypatch.setenv("RAGLINE_API__MAX_CONNECTIONS", "100")
    settings = Settings.load()
    assert (settings.milvus_uri, settings.store.url, settings.llm.batch_max) == ("http://milvus:19530",) * 2 + (8,)
    assert settings.http_max_connections == 100
    assert Settings.load(llm_batch_max=4).llm_batch_max == 4  # arguments still win
    monkeypatch.setenv("RAGLINE_MILVUS_URI", "elsewhere")
    with pytest.raises(ConfigurationError, match=r"RAGLINE_MILVUS_URI is set twice \(also as RAGLINE_STORE__URL\)"):
        Settings.load()
    monkeypatch.delenv("RAGLINE_MILVUS_URI")
    monkeypatch.setenv("RAGLINE_STORE__URI", "x")
    with pytest.raises(ConfigurationError, match=r"RAGLINE_STORE__URI: store has no setting 'uri'; it has: .*url"):
        Settings.load()
    monkeypatch.delenv("RAGLINE_STORE__URI")
    monkeypatch.setenv("RAGLINE_STORAGE__URL", "x")
    with pytest.raises(ConfigurationError, match="no settings group 'storage'"):
        Settings.load()
