from tests.core.fakes import fake_clock, limiter_redis  # noqa: F401 (fixtures)
