from django.apps import AppConfig


class SiteConfig(AppConfig):
    """The UI layer: the admin site's agent, version and request pages, the timeline,
    people, demo data. It may import every app; no app imports it."""

    name = "agentconfig.site"
    label = "agentconfig_site"
    verbose_name = "Site"
