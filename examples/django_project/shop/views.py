"""Views on kirocache: a cache_page view, @cached data behind views, sessions, counters."""

from __future__ import annotations

from datetime import timedelta
from itertools import count

from django.core.cache import cache
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import cache_page

from kirocache import Namespace, cached

COURSES = Namespace("course:", ttl=timedelta(minutes=10))
CATALOGUE = {1: "Python basics", 2: "Async Python", 3: "Caching with Redis"}
renders = count(1)  # how often the home page was really rendered
loads: list[int] = []  # how often the "database" was asked


@cache_page(60)
def home(request: HttpRequest) -> HttpResponse:
    """A whole response cached by Django's cache_page, in kirocache."""
    return HttpResponse(f"<h1>Courses</h1><p>render #{next(renders)}</p>")


@cached(prefix=COURSES, key="{course_id}")
def load_course(course_id: int) -> dict[str, object] | None:
    """The data a view shows, cached by kirocache (keyed by the id, not the request)."""
    loads.append(course_id)
    title = CATALOGUE.get(course_id)
    return None if title is None else {"id": course_id, "title": title}


@cached(prefix=COURSES, key="async:{course_id}")
async def aload_course(course_id: int) -> dict[str, object] | None:
    """The async twin, for async views."""
    loads.append(course_id)
    title = CATALOGUE.get(course_id)
    return None if title is None else {"id": course_id, "title": title}


def course(request: HttpRequest, course_id: int) -> JsonResponse:
    """One course: the view is cheap, the @cached function behind it is not."""
    found = load_course(course_id)
    if found is None:
        raise Http404("no such course")
    return JsonResponse(found)


async def async_course(request: HttpRequest, course_id: int) -> JsonResponse:
    """An async view awaiting an async @cached function."""
    found = await aload_course(course_id)
    if found is None:
        raise Http404("no such course")
    return JsonResponse(found)


def visits(request: HttpRequest) -> JsonResponse:
    """A per-visitor count in the session, which lives in the cache."""
    request.session["visits"] = request.session.get("visits", 0) + 1
    return JsonResponse({"visits": request.session["visits"]})


def counter(request: HttpRequest, name: str) -> JsonResponse:
    """A shared counter through Django's cache API: add, then an atomic incr."""
    cache.add(f"counter:{name}", 0, timeout=None)
    return JsonResponse({name: cache.incr(f"counter:{name}")})
