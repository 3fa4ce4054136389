"""Django's Redis cache backend, reusing one redis client per connection pool.

Django's RedisCacheClient builds a new `redis.Redis` object for every cache call, and
redis-py (8.x) rebuilds ~170 response callbacks in that constructor: about 55 µs per
call, the largest single cost of a warm runtime request (bench/README.md; upstream
redis/redis-py#3624). A client is thread-safe and holds no state of its own beyond its
pool, so one per pool is enough. Remove this module when upstream fixes the constructor.
"""

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient as DjangoRedisCacheClient


class RedisCacheClient(DjangoRedisCacheClient):
    if TYPE_CHECKING:
        # Django's private API that this class builds on; django-stubs leaves it out.
        _client: Callable[..., Any]
        _get_connection_pool_index: Callable[[bool], int]
        _get_connection_pool: Callable[[bool], Any]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, Any] = {}

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        index = self._get_connection_pool_index(write)
        client = self._clients.get(index)
        if client is None:
            client = self._clients[index] = self._client(
                connection_pool=self._get_connection_pool(write)
            )
        return client


class RedisCache(DjangoRedisCache):
    def __init__(self, server: Any, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = RedisCacheClient
