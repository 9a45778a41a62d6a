"""The example's URLs."""

from __future__ import annotations

from django.urls import path

from shop import views

urlpatterns = [
    path("", views.home, name="home"),
    path("courses/<int:course_id>", views.course, name="course"),
    path("async/courses/<int:course_id>", views.async_course, name="async-course"),
    path("visits", views.visits, name="visits"),
    path("counter/<str:name>", views.counter, name="counter"),
]
