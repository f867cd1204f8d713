"""Response cache: hits for identical deterministic requests, opt-in and opt-out, TTL, eviction, Redis."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from promptyard.errors import Unavailable
from promptyard.execution.cache import CachedResponse, DatabaseCache, RedisCache, cache_key, output_options
from promptyard.execution.pipeline import ExecutionRequest, execute, execute_stream, get_cache
from promptyard.models.service import get_manager, register_model
from promptyard.plugins.function import FunctionPlugin
from tests.fixtures.openai_server import OpenAIServer, Reply, completion_body


def counter_fn():
    """A model whose every answer differs, so a repeated output can only come from the cache."""
    calls = {"n": 0}

    def fn(prompt, params):
        calls["n"] += 1
        return f"answer {calls['n']}"

    return fn, calls


def test_second_identical_deterministic_request_is_a_hit(install):
    fn, calls = counter_fn()
    install("m", fn)
    first = execute(ExecutionRequest(model="m", input="x"))
    second = execute(ExecutionRequest(model="m", input="x", params={"max_new_tokens": 256}))
    assert (first.cache_hit, second.cache_hit) == (False, True)
    assert second.output == first.output == "answer 1"
    assert (second.tokens_in, second.tokens_out, second.cost) == (first.tokens_in, first.tokens_out, 0.0)
    assert calls["n"] == 1
    assert get_cache().stats() == {"entries": 1, "hits": 1, "misses": 1, "hit_rate": 0.5}


def test_different_input_or_params_miss(install):
    fn, calls = counter_fn()
    install("m", fn)
    execute(ExecutionRequest(model="m", input="x"))
    assert not execute(ExecutionRequest(model="m", input="y")).cache_hit
    assert not execute(ExecutionRequest(model="m", input="x", params={"max_new_tokens": 5})).cache_hit
    assert calls["n"] == 3


def test_sampled_requests_are_not_cached_unless_opted_in(install):
    fn, calls = counter_fn()
    install("m", fn)
    sampled = {"do_sample": True, "temperature": 0.8}
    outputs = [execute(ExecutionRequest(model="m", input="x", params=sampled)).output for _ in range(2)]
    assert outputs == ["answer 1", "answer 2"]
    assert get_cache().stats()["entries"] == 0
    execute(ExecutionRequest(model="m", input="x", params=sampled, cache="always"))
    hit = execute(ExecutionRequest(model="m", input="x", params=sampled, cache="always"))
    assert hit.cache_hit and hit.output == "answer 3"
    seeded = {**sampled, "seed": 7}  # a fixed seed makes sampling deterministic
    execute(ExecutionRequest(model="m", input="x", params=seeded))
    assert execute(ExecutionRequest(model="m", input="x", params=seeded)).cache_hit


def test_cache_false_neither_reads_nor_writes(install):
    fn, calls = counter_fn()
    install("m", fn)
    execute(ExecutionRequest(model="m", input="x"))
    skipped = execute(ExecutionRequest(model="m", input="x", cache=False))
    assert not skipped.cache_hit and skipped.output == "answer 2"
    execute(ExecutionRequest(model="m", input="z", cache=False))
    assert get_cache().stats()["entries"] == 1


def test_failed_and_cancelled_generations_are_never_cached(install):
    state = {"fail": True}

    def flaky(prompt, params):
        if state["fail"]:
            raise RuntimeError("boom")
        return "one two three"

    install("m", flaky)
    with pytest.raises(Unavailable):
        execute(ExecutionRequest(model="m", input="x"))
    state["fail"] = False
    stream = execute_stream(ExecutionRequest(model="m", input="x"))
    next(stream)
    stream.close()
    assert get_cache().stats()["entries"] == 0
    assert not execute(ExecutionRequest(model="m", input="x")).cache_hit


def test_a_streamed_response_is_cached_and_replayed_as_a_stream(install):
    fn, calls = counter_fn()
    install("m", lambda p, params: fn(p, params) + " with several words")
    live = list(execute_stream(ExecutionRequest(model="m", input="x")))
    replay = list(execute_stream(ExecutionRequest(model="m", input="x")))
    assert calls["n"] == 1
    assert [e["delta"] for e in replay[:-1]] == [e["delta"] for e in live[:-1]]
    assert len(replay) > 2
    assert replay[-1]["execution"]["cache_hit"] is True
    assert replay[-1]["execution"]["output"] == live[-1]["execution"]["output"] == "answer 1 with several words"
    assert execute(ExecutionRequest(model="m", input="x")).cache_hit  # and serves plain requests too


def install_with_options(name, fn, source, options):
    """A function-backed model registered with plugin options (install() registers none)."""
    register_model(name, "function", source, options=options, require_plugin=False)
    get_manager().put(name, FunctionPlugin(fn, source=source))


def test_models_sharing_a_source_and_options_share_entries(install):
    fn, calls = counter_fn()
    install("a", fn, source="same/weights")
    install("b", fn, source="same/weights")
    execute(ExecutionRequest(model="a", input="x"))
    assert execute(ExecutionRequest(model="b", input="x")).cache_hit
    install_with_options("c", fn, "same/weights", {"prompt_format": "system-user-assistant"})
    install_with_options("d", fn, "same/weights", {"prompt_format": "system-user-assistant"})
    assert not execute(ExecutionRequest(model="c", input="x")).cache_hit  # its options change the output
    assert execute(ExecutionRequest(model="d", input="x")).cache_hit
    assert calls["n"] == 2


def test_served_models_on_one_server_never_answer_for_each_other(app):
    with OpenAIServer() as server:
        server.replies += [Reply(body=completion_body({}, "from gpt-4o")),
                           Reply(body=completion_body({}, "from gpt-4o-mini"))]
        register_model("big", "openai-compatible", server.base_url, options={"model": "gpt-4o"})
        register_model("small", "openai-compatible", server.base_url, options={"model": "gpt-4o-mini"})
        # Options that only change how the server is reached (timeouts, retries, the key's variable) do not
        # change the answer: such a model shares the entries.
        register_model("big-patient", "openai-compatible", server.base_url,
                       options={"model": "gpt-4o", "timeout": 600, "max_retries": 0, "api_key_env": "PATH"})
        big = execute(ExecutionRequest(model="big", input="x"))
        small = execute(ExecutionRequest(model="small", input="x"))
        patient = execute(ExecutionRequest(model="big-patient", input="x"))
    assert [r["model"] for r in server.requests] == ["gpt-4o", "gpt-4o-mini"]
    assert (big.output, small.output, small.cache_hit) == ("from gpt-4o", "from gpt-4o-mini", False)
    assert (patient.output, patient.cache_hit) == ("from gpt-4o", True)


def test_key_covers_backend_weights_options_input_and_params():
    base = dict(plugin="transformers", source="s", revision="r", quantization=None, options={"dtype": "float16"},
                rendered_input="x", params={"max_new_tokens": 5})
    key = cache_key(**base)
    assert len(key) == 64 and key == cache_key(**dict(base))
    for change in ({"plugin": "other"}, {"source": "t"}, {"revision": "q"}, {"quantization": "4bit"},
                   {"options": {}}, {"options": {"dtype": "float32"}}, {"options": {"dtype": "float16", "x": 1}},
                   {"rendered_input": "y"}, {"params": {"max_new_tokens": 6}},
                   {"rendered_input": [{"role": "user", "content": "x"}]}):
        assert cache_key(**{**base, **change}) != key


def test_only_options_a_plugin_calls_operational_are_left_out_of_the_key(app):
    options = {"model": "m", "timeout": 5, "max_retries": 1, "api_key_env": "K", "context_length": 100}
    assert output_options("openai-compatible", options) == {"model": "m", "context_length": 100}
    assert output_options("transformers", {"dtype": "float16", "cache_dir": "/c", "trust_remote_code": True}) \
        == {"dtype": "float16", "trust_remote_code": True}
    assert output_options("not-installed", {"cache_dir": "/c"}) == {"cache_dir": "/c"}  # unknown: kept


class Clock:
    def __init__(self):
        self.now = datetime(2026, 1, 1, tzinfo=timezone.utc)

    def __call__(self):
        return self.now


def entry(text):
    return CachedResponse(text, "stop", 1, 2)


def test_database_entries_expire_after_the_ttl(app):
    clock = Clock()
    cache = DatabaseCache(ttl_s=60, max_entries=10, clock=clock)
    cache.put("k", "m", {}, entry("hello"))
    clock.now += timedelta(seconds=59)
    assert cache.get("k") == entry("hello")
    clock.now += timedelta(seconds=2)
    assert cache.get("k") is None
    assert cache.stats() == {"entries": 0, "hits": 1, "misses": 1, "hit_rate": 0.5}


def test_database_cache_evicts_the_least_recently_used_beyond_the_bound(app):
    clock = Clock()
    cache = DatabaseCache(ttl_s=0, max_entries=2, clock=clock)
    for key in ("a", "b"):
        clock.now += timedelta(seconds=1)
        cache.put(key, "m", {}, entry(key))
    clock.now += timedelta(seconds=1)
    assert cache.get("a") is not None  # "a" is now more recently used than "b"
    clock.now += timedelta(seconds=1)
    cache.put("c", "m", {}, entry("c"))
    assert cache.get("b") is None
    assert cache.get("a") is not None and cache.get("c") is not None
    assert cache.stats()["entries"] == 2


def test_clear_drops_entries_and_counters(app):
    cache = DatabaseCache(ttl_s=0, max_entries=10)
    cache.put("a", "m", {}, entry("a"))
    cache.get("a")
    assert cache.clear() == 1
    assert cache.stats() == {"entries": 0, "hits": 0, "misses": 0, "hit_rate": 0.0}


@pytest.fixture
def redis_cache(redis_url):
    import redis

    client = redis.Redis.from_url(redis_url)
    cache = RedisCache(client, ttl_s=0, max_entries=2, prefix=f"test:{uuid.uuid4().hex}:")
    yield cache
    cache.clear()


@pytest.mark.redis
def test_redis_cache_hits_misses_and_evicts(redis_cache):
    import time

    redis_cache.put("a", "m", {"max_new_tokens": 5}, entry("a"))
    assert redis_cache.get("a") == entry("a")
    assert redis_cache.get("nope") is None
    time.sleep(0.01)  # distinct last-use scores
    redis_cache.put("b", "m", {}, entry("b"))
    time.sleep(0.01)
    redis_cache.get("a")
    time.sleep(0.01)
    redis_cache.put("c", "m", {}, entry("c"))
    assert redis_cache.get("b") is None
    assert redis_cache.stats() == {"entries": 2, "hits": 2, "misses": 2, "hit_rate": 0.5}
    assert redis_cache.clear() == 2
    assert redis_cache.stats()["entries"] == 0


@pytest.mark.redis
def test_redis_entries_expire(redis_cache):
    import time

    redis_cache.ttl_s = 0.2
    redis_cache.put("a", "m", {}, entry("a"))
    assert redis_cache.get("a") is not None
    time.sleep(0.3)
    assert redis_cache.get("a") is None
    assert redis_cache.stats()["entries"] == 0


class TestThroughThePipelineOnRedis:
    @pytest.fixture
    def app_config(self, redis_url):
        return {"REDIS_URL": redis_url, "PROMPTYARD_CACHE_PREFIX": f"test:{uuid.uuid4().hex}:"}

    @pytest.mark.redis
    def test_the_app_uses_redis_when_redis_url_is_set(self, install, app):
        fn, calls = counter_fn()
        install("m", fn)
        assert isinstance(get_cache(), RedisCache)
        execute(ExecutionRequest(model="m", input="x"))
        hit = execute(ExecutionRequest(model="m", input="x"))
        assert hit.cache_hit and hit.output == "answer 1" and calls["n"] == 1
        assert get_cache().stats()["hits"] == 1
        get_cache().clear()


def entry_hits(key):
    from sqlalchemy import select

    from promptyard.db import db
    from promptyard.db.models import CacheEntry

    db.session.expire_all()
    return db.session.scalar(select(CacheEntry.hits).where(CacheEntry.key == key))


def test_database_get_without_commit_leaves_the_hit_to_the_callers_transaction(app):
    from promptyard.db import db

    cache = DatabaseCache(ttl_s=0, max_entries=10)
    cache.put("k", "m", {}, entry("hello"))
    assert cache.get("k", commit=False) == entry("hello")
    db.session.rollback()
    assert entry_hits("k") == 0
    assert cache.get("k", commit=False) == entry("hello")
    db.session.commit()
    assert entry_hits("k") == 1
    assert cache.get("k") == entry("hello")  # the default commits on its own
    db.session.rollback()
    assert entry_hits("k") == 2
