"""URLs of the example project."""

from __future__ import annotations

from django.urls import path

from examples.django_project import views

urlpatterns = [
    path("", views.index),
    path("boom/", views.boom),
]
