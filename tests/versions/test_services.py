"""versions.services: numbering, refusals that write nothing, immutability at every layer."""

import threading

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction

from agentconfig.core.actors import Actor
from agentconfig.core.errors import Forbidden, ImmutableRecord
from tests import factories
from versions.models import AgentVersion
from versions.services import create_agent, create_version


def test_create_version__first_and_second__numbered_1_and_2_with_lineage(agent):
    v1 = factories.create_version(agent)
    v2 = factories.create_version(agent)

    assert (v1.version_number, v2.version_number) == (1, 2)
    assert v2.derived_from == v1
    assert len(v2.config_hash) == 64


def test_create_version__same_config_as_latest__refused_with_no_changes(agent, system_actor):
    config = factories.config()
    create_version(
        agent=agent, actor=system_actor, config=config, change_description="a", source="cli"
    )

    with pytest.raises(ValidationError, match="no changes compared to v1"):
        create_version(
            agent=agent,
            actor=system_actor,
            config=dict(reversed(list(config.items()))),
            change_description="b",
            source="cli",
        )
    assert agent.versions.count() == 1


def test_create_version__same_config_as_older_version__allowed(agent, system_actor):
    # Going back to an earlier config is a legitimate new version (a "revert commit").
    config = factories.config()
    for cfg in (config, factories.config(), config):
        create_version(
            agent=agent, actor=system_actor, config=cfg, change_description="x", source="cli"
        )

    assert list(agent.versions.values_list("version_number", flat=True)) == [3, 2, 1]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"temperature": 3}, "temperature"),
        ({"system_prompt": "Call with sk-proj-" + "q" * 30}, "system_prompt"),
        ({"guardrails": {"auth": "-----BEGIN PRIVATE KEY-----"}}, "guardrails"),
        ({"tools": ["a", "a"]}, "tools"),
    ],
)
def test_create_version__invalid_input__field_error_and_nothing_written(
    agent, system_actor, overrides, field
):
    with pytest.raises(ValidationError) as excinfo:
        create_version(
            agent=agent,
            actor=system_actor,
            config=factories.config(**overrides),
            change_description="x",
            source="cli",
        )

    assert field in excinfo.value.message_dict
    assert not AgentVersion.objects.exists()


def test_create_version__credential__message_names_line_and_column(agent, system_actor):
    prompt = "Line one.\nUse AKIAIOSFODNN7EXAMPLE for S3."

    with pytest.raises(ValidationError) as excinfo:
        create_version(
            agent=agent,
            actor=system_actor,
            config=factories.config(system_prompt=prompt),
            change_description="x",
            source="cli",
        )

    message = excinfo.value.message_dict["system_prompt"][0]
    assert "line 2, column 5" in message and "AWS access key" in message


def test_create_version__typo_and_credential__both_reported_at_once(agent, system_actor):
    config = factories.config(system_prompt="Use AKIAIOSFODNN7EXAMPLE.")
    config["temprature"] = config.pop("temperature")

    with pytest.raises(ValidationError) as excinfo:
        create_version(
            agent=agent, actor=system_actor, config=config, change_description="x", source="cli"
        )

    assert {"temprature", "temperature", "system_prompt"} <= set(excinfo.value.message_dict)


def test_create_version__blank_change_description__refused(agent, system_actor):
    with pytest.raises(ValidationError) as excinfo:
        create_version(
            agent=agent,
            actor=system_actor,
            config=factories.config(),
            change_description="  ",
            source="cli",
        )

    assert "change_description" in excinfo.value.message_dict


def test_create_version__user_without_permission__forbidden(agent):
    user = factories.UserFactory(is_staff=True)

    with pytest.raises(Forbidden, match=r"versions\.add_agentversion"):
        create_version(
            agent=agent,
            actor=Actor.of(user),
            config=factories.config(),
            change_description="x",
            source="browser",
        )


def test_create_version__user_with_permission__records_creator(agent):
    user = factories.user_with("versions.add_agentversion")

    version = factories.create_version(agent, actor=Actor.of(user))

    assert version.created_by == user and version.created_by_label == user.username


def test_create_agent__duplicate_slug__field_error(agent, system_actor):
    with pytest.raises(ValidationError) as excinfo:
        create_agent(slug="support-bot", name="Again", actor=system_actor)

    assert "slug" in excinfo.value.message_dict


def test_create_agent__slug_not_url_safe__field_error(system_actor, db):
    with pytest.raises(ValidationError) as excinfo:
        create_agent(slug="Support Bot", name="x", actor=system_actor)

    assert "slug" in excinfo.value.message_dict


# --- immutability ------------------------------------------------------------------


def test_version__save_after_insert__refused(agent):
    version = factories.create_version(agent)
    version.system_prompt = "changed"

    with pytest.raises(ImmutableRecord):
        version.save()
    version.refresh_from_db()
    assert version.system_prompt != "changed"


def test_version__delete__refused(agent):
    version = factories.create_version(agent)

    with pytest.raises(ImmutableRecord):
        version.delete()
    with pytest.raises(ImmutableRecord):
        AgentVersion.objects.filter(pk=version.pk).delete()
    assert AgentVersion.objects.filter(pk=version.pk).exists()


def test_version__queryset_update_and_bulk_update__refused(agent):
    version = factories.create_version(agent)

    with pytest.raises(ImmutableRecord):
        AgentVersion.objects.filter(pk=version.pk).update(model="other")
    with pytest.raises(ImmutableRecord):
        AgentVersion.objects.bulk_update([version], ["model"])
    version.refresh_from_db()
    assert version.model == "gpt-4o-mini"


@pytest.mark.postgres
def test_version__raw_sql_update_and_delete__refused_by_database(agent):
    version = factories.create_version(agent)

    for sql in (
        "UPDATE versions_agentversion SET system_prompt = 'hacked' WHERE id = %s",
        "DELETE FROM versions_agentversion WHERE id = %s",
    ):
        with (
            pytest.raises(IntegrityError, match="append-only"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(sql, [version.pk])
    version.refresh_from_db()
    assert version.system_prompt != "hacked"


# --- concurrency -------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_create_version__30_threads_at_once__numbers_1_to_30_and_no_errors():
    # Given an agent and 30 threads released together
    agent = factories.create_agent(slug="busy-bot")
    threads_count = 30
    barrier = threading.Barrier(threads_count)
    errors: list[BaseException] = []

    def create(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            create_version(
                agent=agent,
                actor=Actor.system(f"thread-{index}"),
                config=factories.config(system_prompt=f"Prompt number {index}."),
                change_description=f"thread {index}",
                source="cli",
            )
        except BaseException as exc:  # every failure must be reported, whatever it is
            errors.append(exc)
        finally:
            connection.close()

    # When they all create a version of the same agent
    threads = [threading.Thread(target=create, args=(i,)) for i in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    # Then nobody saw an error and the numbers are exactly 1..30
    assert errors == []
    numbers = sorted(
        AgentVersion.objects.filter(agent=agent).values_list("version_number", flat=True)
    )
    assert numbers == list(range(1, threads_count + 1))
