from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

admin.site.site_header = "agentconfig"
admin.site.site_title = "agentconfig"
admin.site.index_title = "Agent configuration"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    path("admin/", admin.site.urls),
    path("api/v1/manage/", include("agentconfig.api.urls")),
    path("", include("delivery.urls")),
]
