"""A Flask app on kirocache: an app factory, the cache in app.extensions, an @cached view.

Run it (from the repository root)::

    flask --app examples/flask_app/app.py run

``REDIS_URL`` picks the Redis server (memory when unset).
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from flask import Flask, abort, current_app

import kirocache
from kirocache import Cache, Namespace, cached

COURSES = Namespace("course:", ttl=timedelta(minutes=10))
CATALOGUE = {1: "Python basics", 2: "Async Python", 3: "Caching with Redis"}
loads: list[int] = []  # how often the "database" was asked


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app and its cache; ``KIROCACHE_URL`` in ``config`` picks the backend."""
    app = Flask(__name__)
    app.config.from_mapping(
        KIROCACHE_URL=os.environ.get("REDIS_URL") or "memory://",
        KIROCACHE_KEY_PREFIX="flask-example:",
    )
    app.config.from_mapping(config or {})
    cache = Cache.from_url(
        app.config["KIROCACHE_URL"], key_prefix=app.config["KIROCACHE_KEY_PREFIX"]
    )
    cache.ping()  # fail fast: a wrong URL or a server that is down stops the start-up here
    app.extensions["kirocache"] = cache
    kirocache.configure(cache)  # the default for @cached functions without cache=
    app.register_blueprint(_routes(app))
    return app


def get_cache() -> Cache:
    """The current app's cache, for views and helpers."""
    cache: Cache = current_app.extensions["kirocache"]
    return cache


def _routes(app: Flask) -> Any:
    from flask import Blueprint

    routes = Blueprint("courses", __name__)

    @routes.get("/courses/<int:course_id>")
    @cached(prefix=COURSES, key="{course_id}")
    def course(course_id: int) -> dict[str, object]:
        """A view cached whole: its result is keyed by the URL's id."""
        loads.append(course_id)
        title = CATALOGUE.get(course_id)
        if title is None:
            abort(404)  # raises: nothing is cached for an unknown id
        return {"id": course_id, "title": title}

    @routes.put("/courses/<int:course_id>/<title>")
    def rename(course_id: int, title: str) -> dict[str, object]:
        """Change a course and drop its cached copy."""
        if course_id not in CATALOGUE:
            abort(404)
        CATALOGUE[course_id] = title
        course.invalidate(course_id)
        return {"id": course_id, "title": title}

    @routes.post("/visits/<page>")
    def visit(page: str) -> dict[str, int | None]:
        """A counter in the app's cache."""
        return {"visits": get_cache().incr(f"visits:{page}")}

    return routes
