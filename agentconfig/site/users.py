"""The user pages of the admin: people's roles change only through agentconfig.core.people.

Pages (UserAdmin, replacing Django's stock one):
- …/auth/user/add/              the stock add page, but the user is created by
  people.create_user, with groups, staff status and a reason;
- …/auth/user/<id>/change/      the stock change form, with groups, staff, superuser and
  direct permissions read-only: it edits names, e-mail, active and dates, never roles;
- …/auth/user/<id>/roles/       Change roles…: GET the form; POST shows before → after to
  confirm; POST with `confirm` calls people.set_roles.

Invariants:
- Roles change only through people.set_roles / people.create_user, which refuse
  self-promotion and superuser grants by non-superusers and write the audit record.
  A refusal is shown on the form with the service's words; nothing is written.
- The stock change form never writes the role columns, not even from a row read before
  a concurrent role change (it saves only the fields it changed).
- A non-superuser cannot change a superuser's account at all (details or password):
  taking over a superuser's login would be the shortest way to superuser.
- Direct user permissions are not editable anywhere: roles are the migration's groups.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.auth import admin as auth_admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin
from django.contrib.auth.forms import AdminUserCreationForm
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters

from agentconfig.core import people
from agentconfig.core.actors import Actor
from agentconfig.core.admin_pages import (
    ChangePageMixin,
    ReadOnlyAdminMixin,
    Refused,
    call_service,
    page_context,
    render_add_page,
    render_forbidden,
    show_refusal,
)
from agentconfig.core.errors import Forbidden
from agentconfig.core.reasons import validate_reason

User = get_user_model()
T = TypeVar("T")
ROLE_FIELDS = ("is_staff", "is_superuser", "groups", "user_permissions")
ALLOWED = ("GET", "HEAD", "POST")
# As django.contrib.auth.admin defines it (django-stubs does not declare that one).
sensitive_post_parameters_m = method_decorator(sensitive_post_parameters())


class _GroupsField(forms.ModelMultipleChoiceField):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            queryset=Group.objects.order_by("name"),
            required=False,
            widget=forms.CheckboxSelectMultiple,
            **kwargs,
        )


class _ReasonField(forms.CharField):
    """Why, kept in the audit: required (said on the form, checked by the service's rule)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            required=False, widget=forms.Textarea(attrs={"rows": 3, "required": True}), **kwargs
        )

    def clean(self, value: Any) -> str:
        try:
            return validate_reason(super().clean(value))
        except ValidationError as exc:
            raise ValidationError(exc.message_dict.get("reason", exc.messages)) from None


class UserAddForm(AdminUserCreationForm):
    """The stock user-creation form (username, password) plus e-mail, roles and why."""

    groups = _GroupsField(help_text="The roles this person works in.")
    is_staff = forms.BooleanField(
        required=False,
        initial=True,
        label="Staff status",
        help_text="May sign in to the admin (where every page of agentconfig lives).",
    )
    reason = _ReasonField(
        help_text="Why this person gets an account and these roles — kept in the audit."
    )

    class Meta(AdminUserCreationForm.Meta):
        fields = ("username", "email")


class RolesForm(forms.Form):
    """A person's roles as they should be, and why."""

    groups = _GroupsField(
        help_text="Exactly the groups the person will be in (agentconfig.core.roles says what "
        "each may do)."
    )
    is_staff = forms.BooleanField(
        required=False, label="Staff status", help_text="May sign in to the admin."
    )
    is_superuser = forms.BooleanField(
        required=False,
        label="Superuser status",
        help_text="Holds every permission without being granted it. Only a superuser may grant it.",
    )
    reason = _ReasonField(help_text="Why — kept in the audit with the roles before and after.")
    # The roles the confirmation page showed as "before" (JSON): if they moved since,
    # the page no longer describes the change.
    expected = forms.CharField(required=False, widget=forms.HiddenInput)

    def clean_expected(self) -> dict[str, Any] | None:
        raw = self.cleaned_data["expected"]
        if not raw:
            return None
        try:
            expected = json.loads(raw)
        except ValueError:
            expected = None
        if not isinstance(expected, dict):
            raise ValidationError("The confirmation was not understood: start again.")
        return expected


def _on_form(form: forms.BaseForm, service: Callable[..., T], **kwargs: Any) -> T | Refused:
    """call_service, but Forbidden too is shown on the form (status 403): these pages are
    open to the person; it is the roles they asked for that they may not grant."""
    try:
        return call_service(form, service, **kwargs)
    except Forbidden as exc:
        show_refusal(form, exc)
        return Refused(exc.http_status)


def _plan_roles_change(**roles: Any) -> people.RolesChange:
    """people.plan_roles_change, refusing a change that changes nothing."""
    change = people.plan_roles_change(**roles)
    if not change.changes_anything:
        raise ValidationError(
            f"{change.username} already has exactly these roles: nothing to change."
        )
    return change


admin.site.unregister(User)


@admin.register(User)
class UserAdmin(ChangePageMixin, auth_admin.UserAdmin):
    add_form = UserAddForm
    roles_template = "admin/auth/user/roles.html"
    roles_confirmation_template = "admin/auth/user/roles_confirmation.html"
    list_display = ("username", "email", "first_name", "last_name", "is_staff", "is_superuser")

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return [
                (
                    None,
                    {"fields": ("username", "email", "usable_password", "password1", "password2")},
                ),
                ("Roles", {"fields": ("groups", "is_staff")}),
                (None, {"fields": ("reason",)}),
            ]
        fieldsets = []
        for name, options in super().get_fieldsets(request, obj):
            if "groups" in options.get("fields", ()):
                options = {
                    **options,
                    "description": "Groups, staff and superuser status change through "
                    "Change roles… (with a reason, kept in the audit), never here. Direct "
                    "permissions are not used: roles are groups.",
                }
            fieldsets.append((name, options))
        return fieldsets

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        readonly = tuple(super().get_readonly_fields(request, obj))
        return readonly if obj is None else (*readonly, *ROLE_FIELDS)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and obj.is_superuser and not request.user.is_superuser:
            return False
        return super().has_change_permission(request, obj)

    def save_model(
        self, request: HttpRequest, obj: Any, form: forms.BaseForm, change: bool
    ) -> None:
        # Only what the form changed: a full save would write the role columns back from
        # a row read before a concurrent role change, undoing it.
        fields = [
            name
            for name in form.changed_data
            if name not in ROLE_FIELDS and not self.opts.get_field(name).many_to_many
        ]
        if fields:
            obj.save(update_fields=fields)

    def change_page_context(self, request: HttpRequest, obj: Any) -> dict[str, Any]:
        return {"can_change_roles": request.user.has_perm(people.CHANGE_USER_PERMISSION)}

    @sensitive_post_parameters_m
    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = UserAddForm(request.POST if request.method == "POST" else None)
        status = 200
        if form.is_bound and form.is_valid():
            data = form.cleaned_data
            user = _on_form(
                form,
                people.create_user,
                username=data["username"],
                email=data.get("email", ""),
                actor=Actor.of(request.user),
                reason=data["reason"],
                groups=data["groups"],
                password=data["password1"] if data["set_usable_password"] else None,
                is_staff=data["is_staff"],
            )
            if isinstance(user, Refused):
                status = user.status
            else:
                self.log_addition(request, user, [{"added": {}}])
                return self.response_add(request, user)
        return render_add_page(
            self,
            request,
            form,
            self.get_fieldsets(request),
            form_url=form_url,
            extra_context=extra_context,
            status=status,
        )

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<path:object_id>/roles/",
                self.admin_site.admin_view(self.roles_view),
                name="auth_user_roles",
            ),
            *super().get_urls(),
        ]

    def roles_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Change roles…: the form, then before → after to confirm, then people.set_roles."""
        if request.method not in ALLOWED:
            return HttpResponseNotAllowed(ALLOWED)
        if not request.user.has_perm(people.CHANGE_USER_PERMISSION):
            return render_forbidden(
                request,
                self,
                f"{request.user.get_username()} may not change people's roles: this needs "
                f"the permission {people.CHANGE_USER_PERMISSION!r}. Ask an administrator.",
            )
        user = self.get_object(request, unquote(object_id))
        if user is None:
            raise Http404(f"There is no user with id {object_id!r}.")
        before = people.roles_of(user)
        if request.method != "POST":
            initial = {
                "groups": list(Group.objects.filter(name__in=before.groups)),
                "is_staff": before.is_staff,
                "is_superuser": before.is_superuser,
            }
            return self._roles_page(request, user, RolesForm(initial=initial))
        form = RolesForm(request.POST)
        if not form.is_valid():
            return self._roles_page(request, user, form)
        data = form.cleaned_data
        roles = {
            "user": user,
            "groups": data["groups"],
            "is_staff": data["is_staff"],
            "is_superuser": data["is_superuser"],
            "actor": Actor.of(request.user),
        }
        if "confirm" not in request.POST:
            change = _on_form(form, _plan_roles_change, **roles)
            if isinstance(change, Refused):
                return self._roles_page(request, user, form, status=change.status)
            return self._roles_confirmation(request, user, form, change)
        # A Conflict (what the person confirmed is no longer the real before) shows the
        # form with the roles as they are now, to decide again.
        updated = _on_form(
            form,
            people.set_roles,
            **roles,
            reason=data["reason"],
            expected_before=data["expected"],
        )
        if isinstance(updated, Refused):
            return self._roles_page(request, user, form, status=updated.status)
        self.log_change(
            request, updated, [{"changed": {"fields": ["groups", "is_staff", "is_superuser"]}}]
        )
        messages.success(
            request,
            f"The roles of {updated.get_username()} changed; the audit records who, why, "
            "before and after.",
        )
        return HttpResponseRedirect(
            reverse(f"{self.admin_site.name}:auth_user_change", args=[updated.pk])
        )

    def _roles_page(
        self, request: HttpRequest, user: Any, form: RolesForm, status: int = 200
    ) -> TemplateResponse:
        context = page_context(
            request,
            self,
            f"Change roles: {user.get_username()}",
            person=user,
            current=people.roles_of(user),
            form=form,
        )
        return TemplateResponse(request, self.roles_template, context, status=status)

    def _roles_confirmation(
        self, request: HttpRequest, user: Any, form: RolesForm, change: people.RolesChange
    ) -> TemplateResponse:
        context = page_context(
            request,
            self,
            f"Change the roles of {user.get_username()}?",
            person=user,
            change=change,
            # What the form said, carried through the confirmation in hidden fields.
            entered=form.cleaned_data,
            expected=json.dumps(change.before.as_record(), sort_keys=True),
        )
        return TemplateResponse(request, self.roles_confirmation_template, context)


# The role groups and their permissions come from a migration (agentconfig.core.roles): editing
# a group's permissions in the browser would change who may review or deploy without a
# reason or an audit record, so the Group admin is read-only.
admin.site.unregister(Group)


@admin.register(Group)
class ReadOnlyGroupAdmin(ReadOnlyAdminMixin, GroupAdmin):
    """Groups and their permissions can be read here, never added, changed or deleted."""
