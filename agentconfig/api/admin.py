"""Personal access tokens in the admin: people create, see and revoke their own.

A superuser sees (and may revoke) everyone's. Nobody edits a token or sees its hash;
the plaintext is shown once, in the response that created it.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse

from agentconfig.api.models import PersonalAccessToken
from agentconfig.api.services.tokens import MAX_EXPIRY_DAYS, create_token, revoke_token
from agentconfig.core.actors import Actor
from agentconfig.core.admin_pages import OneTimeSecretAddAdmin
from agentconfig.core.errors import ServiceError


class TokenAddForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What will use it, e.g. 'ci-release-job'.")
    expires_in_days = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_EXPIRY_DAYS,
        initial=90,
        help_text="Leave empty for a token that does not expire (revoke it when done).",
    )
    read_only = forms.BooleanField(required=False, help_text="May read but never change anything.")


@admin.register(PersonalAccessToken)
class PersonalAccessTokenAdmin(OneTimeSecretAddAdmin):
    add_form = TokenAddForm
    list_display = (
        "name",
        "user",
        "token_id",
        "read_only",
        "status",
        "created_at",
        "expires_at",
        "last_used_at",
    )
    list_select_related = ("user",)
    search_fields = ("name", "key_id")
    # key_hash is deliberately absent: it is never shown.
    fields = (*list_display, "revoked_at", "revoked_by_label")
    readonly_fields = fields
    actions = ["revoke_selected"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[PersonalAccessToken]:
        tokens = super().get_queryset(request)
        if request.user.is_superuser:
            return tokens
        return tokens.filter(user_id=request.user.pk)

    # Every signed-in admin user manages their own tokens; no model permission needed.
    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_active and request.user.is_staff

    def has_view_permission(
        self, request: HttpRequest, obj: PersonalAccessToken | None = None
    ) -> bool:
        return self.has_module_permission(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self.has_module_permission(request)

    def has_change_permission(
        self, request: HttpRequest, obj: PersonalAccessToken | None = None
    ) -> bool:
        return False

    def has_delete_permission(
        self, request: HttpRequest, obj: PersonalAccessToken | None = None
    ) -> bool:
        return False

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return self.has_module_permission(request)

    @admin.display(description="token")
    def token_id(self, obj: PersonalAccessToken) -> str:
        return f"acp_{obj.key_id}_…"

    @admin.display(description="status")
    def status(self, obj: PersonalAccessToken) -> str:
        if obj.revoked_at is not None:
            return "revoked"
        return "expired" if obj.is_expired else "active"

    def create_via_service(self, request: HttpRequest, form: forms.BaseForm) -> HttpResponse:
        actor = Actor.of(request.user)
        assert actor.user is not None  # noqa: S101 (Actor.of: a signed-in user)
        token, plaintext = create_token(
            user=actor.user,
            name=form.cleaned_data["name"],
            actor=actor,
            expires_in_days=form.cleaned_data["expires_in_days"],
            read_only=form.cleaned_data["read_only"],
            reason="created in the admin",
        )
        return self.secret_created(
            request,
            token,
            plaintext,
            "admin/agentconfig_api/personalaccesstoken/created.html",
            f"Token {token.name} created",
            token=token,
        )

    @admin.action(description="Revoke selected tokens", permissions=["revoke"])
    def revoke_selected(
        self, request: HttpRequest, queryset: QuerySet[PersonalAccessToken]
    ) -> None:
        actor = Actor.of(request.user)
        revoked = []
        for token in queryset.filter(revoked_at__isnull=True):
            try:
                revoke_token(token=token, actor=actor, reason="revoked in the admin")
            except ServiceError as exc:
                messages.error(request, exc.message)
            else:
                revoked.append(token.name)
        if revoked:
            messages.success(
                request, f"Revoked {', '.join(revoked)}: requests presenting them are refused."
            )
