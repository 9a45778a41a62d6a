"""A FastAPI app on kirocache: the cache opened by the lifespan, handed to endpoints, @cached.

Run it (from the repository root)::

    uvicorn main:app --app-dir examples/fastapi_app

``REDIS_URL`` picks the Redis server (memory when unset); ``KIROCACHE_ADMIN_TOKEN`` (and
``KIROCACHE_READ_TOKEN``), when set, mount the admin API and dashboard at ``/admin/cache``.
"""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException

from kirocache import Cache, Namespace, cached
from kirocache.contrib.starlette import CacheLifespan

COURSES = Namespace("course:", ttl=timedelta(minutes=10))

# Built now (nothing connects yet), checked at start-up, closed at shutdown.
lifespan = CacheLifespan(os.environ.get("REDIS_URL"), key_prefix="fastapi-example:")
app = FastAPI(title="kirocache example", lifespan=lifespan)
CacheDep = Annotated[Cache, Depends(lifespan.dependency)]

CATALOGUE = {1: "Python basics", 2: "Async Python", 3: "Caching with Redis"}
loads: list[int] = []  # how often the "database" was asked, to show the cache working


@cached(prefix=COURSES, key="{course_id}")
async def load_course(course_id: int) -> dict[str, object] | None:
    """The slow part a cache saves: a database or an API call."""
    loads.append(course_id)
    await asyncio.sleep(0.05)
    title = CATALOGUE.get(course_id)
    return None if title is None else {"id": course_id, "title": title}


@app.get("/courses/{course_id}")
async def get_course(course_id: int) -> dict[str, object]:
    """One course, from the cache after the first request."""
    course = await load_course(course_id)
    if course is None:
        raise HTTPException(status_code=404, detail="no such course")
    return course


@app.put("/courses/{course_id}")
async def rename_course(course_id: int, title: str) -> dict[str, object]:
    """Change a course and drop its cached copy, so the next read sees the change."""
    if course_id not in CATALOGUE:
        raise HTTPException(status_code=404, detail="no such course")
    CATALOGUE[course_id] = title
    await load_course.invalidate(course_id)
    return {"id": course_id, "title": title}


@app.post("/visits/{page}")
async def visit(page: str, cache: CacheDep) -> dict[str, int | None]:
    """A counter kept in the cache, through the dependency."""
    return {"page_visits": await cache.aincr(f"visits:{page}", ttl=timedelta(days=1))}


@app.get("/health")
async def health(cache: CacheDep) -> dict[str, object]:
    """The backend's round trip, for a load balancer."""
    return {"cache_ping_ms": round(await cache.aping() * 1000, 3)}


def mount_admin() -> bool:
    """Mount kirocache's admin API and dashboard when a token is configured."""
    token = os.environ.get("KIROCACHE_ADMIN_TOKEN")
    if not token:
        return False
    from kirocache.web import admin_app

    read_token = os.environ.get("KIROCACHE_READ_TOKEN") or None
    app.mount("/admin/cache", admin_app(lifespan.cache, token=token, read_token=read_token))
    return True


mount_admin()
