"""The management API (/api/v1/manage/): personal access tokens and the JSON endpoints.

A top layer beside agentconfig.site: it calls the same selectors and services as the
admin and the commands, with the token's user as the actor (docs/decisions/0018).
"""
