from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from deployments import views as runtime_views

admin.site.site_header = "agentconfig"
admin.site.site_title = "agentconfig"
admin.site.index_title = "Agent configuration"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    path("admin/", admin.site.urls),
    path("api/v1/agents/<slug:slug>/config", runtime_views.agent_config, name="runtime-config"),
    path(
        "api/v1/agents/<slug:slug>/outcomes", runtime_views.agent_outcomes, name="runtime-outcomes"
    ),
    path("", include("flags.urls")),
    path("healthz", runtime_views.healthz, name="healthz"),
]
