from django.urls import path, re_path

from agentconfig.api.api import api
from agentconfig.api.problems import not_found

# After the API's own routes: every other path under the prefix answers a 404 problem.
urlpatterns = [path("", api.urls), re_path(r"^(?P<path>.*)$", not_found)]
