from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture
def eager_celery() -> Iterator[None]:
    """Tasks run in-process where they are queued (after commit), like a worker would run them."""
    from oma.celery import app

    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = previous
