"""OFREP routes (included at the site root, so they read /ofrep/v1/...)."""

from django.urls import path

from delivery import ofrep

urlpatterns = [
    path("ofrep/v1/evaluate/flags", ofrep.evaluate_flags, name="ofrep-evaluate-flags"),
    # <path:…> so that any key, even one with a "/", gets the protocol's JSON 404.
    path("ofrep/v1/evaluate/flags/<path:key>", ofrep.evaluate_flag, name="ofrep-evaluate-flag"),
]
