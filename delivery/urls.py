"""The runtime API's routes: config, outcomes, OFREP and the health check.

Included by agentconfig.urls (so Django's full stack serves them too, e.g. in tests) and
resolved on their own by the lean WSGI path (delivery.wsgi), which serves them
without the admin's middleware.
"""

from django.urls import include, path

from delivery import views as runtime_views

urlpatterns = [
    path("api/v1/agents/<slug:slug>/config", runtime_views.agent_config, name="runtime-config"),
    path(
        "api/v1/agents/<slug:slug>/outcomes", runtime_views.agent_outcomes, name="runtime-outcomes"
    ),
    path("", include("delivery.ofrep_urls")),
    path("healthz", runtime_views.healthz, name="healthz"),
]
