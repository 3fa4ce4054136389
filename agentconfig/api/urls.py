from django.urls import path

from agentconfig.api.api import api

urlpatterns = [path("", api.urls)]
