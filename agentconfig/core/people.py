"""People and their roles: creating users and changing their groups and flags.

Every change of who may do what goes through here (the admin's user pages, the
`set_roles` command, the demo data), so the rules live in one place.

Invariants:
- Each change carries a reason and writes its AuditRecord (USER_CREATED, ROLES_CHANGED)
  with the roles before and after, in the change's own transaction; a refusal writes
  nothing.
- Nobody raises their own privileges: no joining a group, no own staff or superuser flag.
  Lowering your own is fine. A second person always makes a promotion, so it is visible.
- Only a superuser makes someone a superuser or changes a superuser's roles, and a
  non-superuser grants only groups whose every permission they hold themselves.
- The user row is locked while its roles change, so the before recorded is the real one.
- Direct user permissions are not changed here (nor editable in the admin): roles are
  groups, which the migration defines (agentconfig.core.roles).

`users_granted_by` reads the records back for deployments.approvals: an approval from
someone the requester created or made a reviewer after opening the request is the
requester's own approval under another name.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef

from agentconfig.core.actors import Actor
from agentconfig.core.audit_records import record_audit
from agentconfig.core.errors import Conflict, Forbidden, NotFound
from agentconfig.core.reasons import validate_reason
from agentconfig.models import AuditAction, AuditRecord

ADD_USER_PERMISSION = "auth.add_user"
CHANGE_USER_PERMISSION = "auth.change_user"


@dataclass(frozen=True)
class Roles:
    """What a person may do, as recorded in the audit: group names, staff, superuser."""

    groups: tuple[str, ...]
    is_staff: bool
    is_superuser: bool

    def as_record(self) -> dict[str, Any]:
        return {
            "groups": list(self.groups),
            "is_staff": self.is_staff,
            "is_superuser": self.is_superuser,
        }


@dataclass(frozen=True)
class RolesChange:
    """A person's roles before and after a change (shown to confirm, then recorded)."""

    username: str
    before: Roles
    after: Roles

    @property
    def added_groups(self) -> list[str]:
        return [g for g in self.after.groups if g not in self.before.groups]

    @property
    def removed_groups(self) -> list[str]:
        return [g for g in self.before.groups if g not in self.after.groups]

    @property
    def changes_anything(self) -> bool:
        return self.before != self.after

    def rows(self) -> list[tuple[str, str, str, bool]]:
        """(what, before, after, changed) per role, in words, for the confirmation page."""

        def flag(value: bool) -> str:
            return "yes" if value else "no"

        def names(groups: tuple[str, ...]) -> str:
            return ", ".join(groups) or "none"

        b, a = self.before, self.after
        return [
            ("Groups", names(b.groups), names(a.groups), b.groups != a.groups),
            (
                "Staff (may sign in to the admin)",
                flag(b.is_staff),
                flag(a.is_staff),
                b.is_staff != a.is_staff,
            ),
            (
                "Superuser (holds every permission)",
                flag(b.is_superuser),
                flag(a.is_superuser),
                b.is_superuser != a.is_superuser,
            ),
        ]


def get_person(username: str) -> Any:
    """The user named `username` (the user model's USERNAME_FIELD), or NotFound."""
    user_model = get_user_model()
    user = user_model.objects.filter(**{user_model.USERNAME_FIELD: username}).first()
    if user is None:
        raise NotFound(f"there is no user {username!r}.")
    return user


def roles_of(user: Any) -> Roles:
    """The roles `user` holds now (one query for the groups)."""
    return Roles(
        groups=tuple(sorted(user.groups.values_list("name", flat=True))),
        is_staff=bool(user.is_staff),
        is_superuser=bool(user.is_superuser),
    )


def resolve_groups(groups: Iterable[Group | str]) -> list[Group]:
    """Groups given as objects or names, sorted by name; ValidationError for unknown names."""
    wanted = list(groups)
    names = {g for g in wanted if isinstance(g, str)}
    ids = {g.pk for g in wanted if isinstance(g, Group)}
    found = list(Group.objects.filter(name__in=names)) if names else []
    missing = names - {g.name for g in found}
    if missing:
        known = ", ".join(Group.objects.order_by("name").values_list("name", flat=True))
        raise ValidationError(
            {
                "groups": f"there is no group named {', '.join(sorted(missing))}; "
                f"the groups are: {known or 'none'}."
            }
        )
    if ids:
        found += [g for g in Group.objects.filter(pk__in=ids) if g.name not in names]
    return sorted({g.pk: g for g in found}.values(), key=lambda g: g.name)


def plan_roles_change(
    *, user: Any, groups: Iterable[Group | str], is_staff: bool, is_superuser: bool, actor: Actor
) -> RolesChange:
    """The change set_roles would make (nothing written); Forbidden if the actor may not."""
    actor.require(CHANGE_USER_PERMISSION, "change people's roles")
    return _plan(user, resolve_groups(groups), is_staff, is_superuser, actor)


def set_roles(
    *,
    user: Any,
    groups: Iterable[Group | str],
    is_staff: bool,
    is_superuser: bool,
    actor: Actor,
    reason: str,
    expected_before: dict[str, Any] | None = None,
) -> Any:
    """Set `user`'s groups and staff/superuser flags to exactly these, with a reason.

    `expected_before` is the roles (Roles.as_record) the person confirmed the change
    against; if they moved meanwhile, nothing is written (Conflict).
    """
    actor.require(CHANGE_USER_PERMISSION, "change people's roles")
    reason = validate_reason(reason)
    wanted = resolve_groups(groups)
    user_model = get_user_model()
    with transaction.atomic():
        # Locked so two changes cannot interleave and the recorded before is the real one.
        locked = user_model.objects.select_for_update().get(pk=user.pk)
        change = _plan(locked, wanted, is_staff, is_superuser, actor)
        if expected_before is not None and change.before.as_record() != expected_before:
            raise Conflict(
                f"{change.username}'s roles changed while you were confirming (now "
                f"{_describe(change.before)}): look at the change again before you save it."
            )
        if not change.changes_anything:
            raise ValidationError(
                f"{change.username} already has exactly these roles: nothing to change."
            )
        locked.is_staff = change.after.is_staff
        locked.is_superuser = change.after.is_superuser
        locked.save(update_fields=["is_staff", "is_superuser"])
        locked.groups.set(wanted)
        record_audit(
            action=AuditAction.ROLES_CHANGED,
            actor=actor,
            reason=reason,
            subject_label=change.username,
            subject_user=locked,
            before=change.before.as_record(),
            after=change.after.as_record(),
        )
    return user_model.objects.get(pk=locked.pk)  # fresh, so no stale permission cache


def create_user(
    *,
    username: str,
    email: str,
    actor: Actor,
    reason: str,
    groups: Iterable[Group | str] = (),
    password: str | None = None,
    is_staff: bool = False,
) -> Any:
    """Create a person in `groups` (no password: they cannot sign in with one), with a reason.

    Nobody is created a superuser: a superuser grants that afterwards with set_roles.
    """
    actor.require(ADD_USER_PERMISSION, "create users")
    reason = validate_reason(reason)
    wanted = resolve_groups(groups)
    _refuse_groups_not_held(actor, [g.name for g in wanted], wanted)
    user_model = get_user_model()
    user = user_model(username=username, email=email or "", is_staff=is_staff)
    if password:
        user.set_password(password)
    else:
        user.set_unusable_password()
    user.full_clean(exclude=["last_login", "date_joined"])
    if user_model.objects.filter(username__iexact=user.get_username()).exists():
        raise ValidationError({"username": "A user with that username already exists."})
    if password:
        try:
            password_validation.validate_password(password, user)
        except ValidationError as exc:
            raise ValidationError({"password": exc.messages}) from None
    after = Roles(tuple(g.name for g in wanted), bool(is_staff), False)
    try:
        with transaction.atomic():
            user.save()
            user.groups.set(wanted)
            record_audit(
                action=AuditAction.USER_CREATED,
                actor=actor,
                reason=reason,
                subject_label=user.get_username(),
                subject_user=user,
                before={},
                after=after.as_record(),
            )
    except IntegrityError:
        # Another request created the same username between the check and the insert.
        raise ValidationError({"username": "A user with that username already exists."}) from None
    return user_model.objects.get(pk=user.pk)


def users_granted_by(
    *, granter_id: Any, user_ids: Iterable[Any], since: datetime, permission: str
) -> set[Any]:
    """Of `user_ids`, those whom `granter_id` created, or gave `permission` through a group
    or the superuser flag, at or after `since`.

    One query for the audit records, and one more for the groups they name only when a
    record changed groups: the cost does not grow with the number of users.
    """
    user_ids = set(user_ids)
    if granter_id is None or not user_ids:
        return set()
    records = list(
        AuditRecord.objects.filter(
            actor_id=granter_id,
            subject_user_id__in=user_ids,
            created_at__gte=since,
            action__in=[AuditAction.USER_CREATED, AuditAction.ROLES_CHANGED],
        ).only("action", "subject_user_id", "before", "after")
    )
    granted = {r.subject_user_id for r in records if r.action == AuditAction.USER_CREATED}
    changes = [r for r in records if r.subject_user_id not in granted]
    named = {
        name for r in changes for side in (r.before, r.after) for name in side.get("groups", [])
    }
    granting: set[str] = set()
    if named:
        app_label, codename = permission.split(".")
        granting = set(
            Group.objects.filter(
                name__in=named,
                permissions__content_type__app_label=app_label,
                permissions__codename=codename,
            ).values_list("name", flat=True)
        )

    def grants(side: dict[str, Any]) -> bool:
        return bool(side.get("is_superuser")) or bool(granting & set(side.get("groups", [])))

    # Only a change that gave the permission counts: adding a group to someone who held
    # it already gave them nothing they could approve with.
    return granted | {
        r.subject_user_id for r in changes if grants(r.after) and not grants(r.before)
    }


def made_grants_since(*, granter: str, since: str) -> Exists:
    """For annotating a list: whether the user in field `granter` created someone or
    changed someone's roles at or after the time in field `since`.

    Where it is false, users_granted_by has nothing to find, so a list of requests
    annotated with it as `requester_made_grants` asks no question per row.
    """
    return Exists(
        AuditRecord.objects.filter(
            actor=OuterRef(granter),
            created_at__gte=OuterRef(since),
            action__in=[AuditAction.USER_CREATED, AuditAction.ROLES_CHANGED],
        )
    )


def _plan(
    user: Any, wanted: list[Group], is_staff: bool, is_superuser: bool, actor: Actor
) -> RolesChange:
    before = roles_of(user)
    after = Roles(tuple(g.name for g in wanted), bool(is_staff), bool(is_superuser))
    change = RolesChange(username=user.get_username(), before=before, after=after)
    _refuse_escalation(actor, user, change)
    _refuse_groups_not_held(actor, change.added_groups, wanted)
    return change


def _refuse_escalation(actor: Actor, user: Any, change: RolesChange) -> None:
    who = actor.user
    if who is None:
        return  # a system actor (the CLI) holds the database credentials anyway
    before, after = change.before, change.after
    if who.pk == user.pk:
        raised = [f"join {', '.join(change.added_groups)}"] if change.added_groups else []
        if after.is_staff and not before.is_staff:
            raised.append("make yourself staff")
        if after.is_superuser and not before.is_superuser:
            raised.append("make yourself a superuser")
        if raised:
            raise Forbidden(
                f"{actor.label} may not raise their own privileges ({'; '.join(raised)}): "
                "another administrator must make that change, so that a second person sees "
                "it. Lowering your own roles is fine."
            )
    if who.is_superuser:
        return
    if before.is_superuser:
        raise Forbidden(
            f"{actor.label} may not change the roles of {change.username}: "
            f"{change.username} is a superuser, and only a superuser may change a "
            "superuser's roles."
        )
    if after.is_superuser:
        raise Forbidden(
            f"{actor.label} may not make {change.username} a superuser: only a superuser "
            "may grant that. Ask a superuser, or grant a group instead."
        )


def _refuse_groups_not_held(actor: Actor, added: list[str], wanted: list[Group]) -> None:
    """A non-superuser grants only groups whose permissions they hold themselves."""
    who = actor.user
    if who is None or who.is_superuser or not added:
        return
    groups = [g for g in wanted if g.name in added]
    permissions = Group.permissions.through.objects.filter(group__in=groups).values_list(
        "group__name", "permission__content_type__app_label", "permission__codename"
    )
    lacking: dict[str, list[str]] = {}
    for group_name, app_label, codename in permissions:
        name = f"{app_label}.{codename}"
        if not who.has_perm(name):
            lacking.setdefault(group_name, []).append(name)
    if lacking:
        group_name, names = sorted(lacking.items())[0]
        shown = ", ".join(sorted(names)[:3]) + (" …" if len(names) > 3 else "")
        raise Forbidden(
            f"{actor.label} may not add people to {group_name}: it grants permissions "
            f"{actor.label} does not hold ({shown}). Ask a superuser."
        )


def _describe(roles: Roles) -> str:
    flags = [("staff", roles.is_staff), ("superuser", roles.is_superuser)]
    held = [*roles.groups, *(name for name, on in flags if on)]
    return ", ".join(held) or "no roles"
