"""Runs on a local Chat Completions server: answers, scores, failures, cancel, concurrency."""

from __future__ import annotations

import json

import pytest
from django.db import connection

from agentconfig.core.actors import Actor
from evaluations.endpoint import EndpointMissing
from evaluations.models import AnswerSource, CaseResult, EvaluationRun, RunStatus
from evaluations.runner import execute_run
from evaluations.services import suites
from tests import factories
from tests.evaluations.chat_server import JUDGE_MODEL, Reply, error
from tests.evaluations.helpers import ACTOR, case, make_suite, run_now

pytestmark = pytest.mark.django_db


def _results(run: EvaluationRun) -> dict[str, CaseResult]:
    return {r.case.key: r for r in CaseResult.objects.filter(run=run).select_related("case")}


def test_run__model_and_judge_answer__every_case_scored_with_tokens_and_latency(
    agent, eval_settings, chat_server, llm
):
    # Given
    version = factories.create_version(
        agent, system_prompt="Be brief.", model="m-1", temperature=0.3, max_tokens=99
    )
    suite_version = make_suite(
        agent,
        [
            case("refund", "How long for refunds?", golden="30 days", criteria="Says 30 days."),
            case(
                "greet",
                [
                    {"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "Hello"},
                    {"role": "user", "content": "Name?"},
                ],
                golden="Ada",
                scorer="contains",
                weight=3,
            ),
        ],
    )
    llm.answers["How long for refunds?"] = "Refunds within 30 days."
    llm.answers["Name?"] = "I am ada."
    llm.scores["Refunds within 30 days."] = 0.5

    # When
    run = run_now(version, suite_version)

    # Then the run completed with the weighted mean: (0.5 * 1 + 1.0 * 3) / 4
    assert run.status == RunStatus.COMPLETED
    assert run.score == pytest.approx(0.875)
    assert run.error_count == 0
    results = _results(run)
    assert results["refund"].answer == "Refunds within 30 days."
    assert results["refund"].score == 0.5
    assert results["refund"].rationale == "Matches the golden answer."
    assert results["refund"].prompt_tokens == 11 and results["refund"].judge_prompt_tokens == 11
    assert results["refund"].latency_ms is not None and results["refund"].attempts == 1
    assert results["greet"].score == 1.0 and results["greet"].judge_latency_ms is None
    assert run.prompt_tokens == 22 and run.judge_prompt_tokens == 11
    # The model got the version's settings and the system prompt first.
    first = next(r for r in chat_server.model_requests() if r["messages"][-1]["content"] == "Name?")
    assert first["model"] == "m-1" and first["temperature"] == 0.3 and first["max_tokens"] == 99
    assert [m["role"] for m in first["messages"]] == ["system", "user", "assistant", "user"]
    assert first["messages"][0]["content"] == "Be brief."
    # The judge was asked for JSON, with the material as data, and the key was sent.
    judge = chat_server.judge_requests()[0]
    assert judge["response_format"] == {"type": "json_object"} and judge["temperature"] == 0
    material = json.loads(judge["messages"][1]["content"])
    assert material["golden_answer"] == "30 days" and material["criteria"] == "Says 30 days."
    assert chat_server.headers[0]["authorization"] == "Bearer test-key"
    assert run.judge_model == JUDGE_MODEL and "You grade the answers" in run.judge_prompt


def test_run__server_slower_than_the_timeout__case_error_and_the_retry_counted(
    agent, eval_settings, chat_server, llm
):
    # Given a server that answers the first question only after 3 s
    eval_settings.EVAL_TIMEOUT_SECONDS = 0.3
    eval_settings.EVAL_MAX_RETRIES = 1
    version = factories.create_version(agent)
    suite_version = make_suite(
        agent,
        [
            case("slow", "slow?", scorer="contains", golden="answer"),
            case("fast", "fast?", scorer="contains", golden="answer"),
        ],
    )
    llm.hook = lambda body: (
        Reply(content="late", delay=3) if body["messages"][-1]["content"] == "slow?" else None
    )

    # When
    run = run_now(version, suite_version)

    # Then the slow case is an error (scored 0), the other one counts
    results = _results(run)
    assert results["slow"].score is None
    assert "no reply within 0.3 s (2 attempts)" in results["slow"].error
    assert results["slow"].error.startswith("model: ")
    assert results["fast"].score == 1.0
    assert run.status == RunStatus.COMPLETED and run.score == 0.5 and run.error_count == 1
    assert sum(1 for r in chat_server.requests if r["messages"][-1]["content"] == "slow?") == 2


def test_run__429_then_success__retried_and_the_case_scores(agent, eval_settings, chat_server, llm):
    # Given
    version = factories.create_version(agent)
    suite_version = make_suite(agent, [case("one", "q?", scorer="contains", golden="answer")])
    llm.queue = [error(429, "rate limited"), error(429, "rate limited")]

    # When
    run = run_now(version, suite_version)

    # Then three requests reached the server and the third one counted
    assert len(chat_server.requests) == 3
    result = _results(run)["one"]
    assert result.score == 1.0 and result.error == "" and result.attempts == 3
    assert run.status == RunStatus.COMPLETED and run.score == 1.0


def test_run__5xx_until_retries_run_out__case_error_names_the_status(
    agent, eval_settings, chat_server, llm
):
    # Given a server that fails 3 times: the first attempt and both retries
    version = factories.create_version(agent)
    suite_version = make_suite(
        agent,
        [
            case("one", "q?", scorer="contains", golden="answer"),
            case("two", "q2?", scorer="contains", golden="answer"),
        ],
    )
    eval_settings.EVAL_CONCURRENCY = 1
    llm.queue = [error(503, "overloaded")] * 3

    # When
    run = run_now(version, suite_version)

    # Then
    result = _results(run)["one"]
    assert result.score is None
    assert result.error.startswith("model: HTTP 503 (3 attempts)")
    # What the server said is kept apart, for those who may see the endpoint's settings
    assert "overloaded" in result.error_detail and "overloaded" not in result.error
    assert run.status == RunStatus.COMPLETED and run.score == 0.5


def test_run__5xx_then_success__retried(agent, eval_settings, chat_server, llm):
    version = factories.create_version(agent)
    suite_version = make_suite(agent, [case("one", "q?", scorer="contains", golden="answer")])
    llm.queue = [error(500)]

    run = run_now(version, suite_version)

    assert len(chat_server.requests) == 2
    assert _results(run)["one"].score == 1.0


def test_run__malformed_judge_reply__case_error_with_the_raw_reply(
    agent, eval_settings, chat_server, llm
):
    # Given a judge that answers in prose for one answer
    version = factories.create_version(agent)
    suite_version = make_suite(agent, [case("bad", "b?"), case("good", "g?")])

    def judge(body):
        if body["model"] == JUDGE_MODEL and "answer to b?" in body["messages"][-1]["content"]:
            return Reply(content="I would say it is pretty good, maybe 8/10.")
        return None

    llm.hook = judge

    # When
    run = run_now(version, suite_version)

    # Then the case is an error, the raw reply kept; the run goes on
    bad = _results(run)["bad"]
    assert bad.score is None
    assert bad.error == "judge: the judge's reply is not a JSON object (the raw reply is kept)"
    assert bad.judge_reply == "I would say it is pretty good, maybe 8/10."
    assert bad.answer == "answer to b?"
    assert _results(run)["good"].score == 1.0
    assert run.status == RunStatus.COMPLETED and run.score == 0.5


def test_run__judge_score_out_of_range__case_error(agent, eval_settings, llm):
    version = factories.create_version(agent)
    suite_version = make_suite(agent, [case("one", "q?"), case("two", "q2?")])
    llm.scores["answer to q?"] = 8

    run = run_now(version, suite_version)

    assert "outside 0..1" in _results(run)["one"].error


def test_run__judge_refuses_response_format__error_suggests_the_setting(agent, eval_settings, llm):
    version = factories.create_version(agent)
    suite_version = make_suite(
        agent, [case("one", "q?"), case("two", "q2?", scorer="contains", golden="answer")]
    )
    llm.hook = lambda body: (
        error(400, "response_format is not supported") if body["model"] == JUDGE_MODEL else None
    )

    run = run_now(version, suite_version)

    message = _results(run)["one"].error
    assert message.startswith("judge: HTTP 400 from")
    assert "EVAL_JUDGE_RESPONSE_FORMAT=none" in message


def test_run__every_case_fails__run_failed_without_a_score(agent, eval_settings, llm):
    version = factories.create_version(agent)
    suite_version = make_suite(agent, [case("one", "q?")])
    llm.hook = lambda body: error(401, "invalid api key")

    run = run_now(version, suite_version)

    assert run.status == RunStatus.FAILED and run.score is None
    assert "every case failed" in run.failure and "HTTP 401" in run.failure


def test_run__concurrency_setting__server_never_sees_more_requests_at_once(
    agent, eval_settings, chat_server, llm
):
    # Given 9 cases, 3 allowed at once, each answer taking 0.15 s
    eval_settings.EVAL_CONCURRENCY = 3
    version = factories.create_version(agent)
    suite_version = make_suite(
        agent, [case(f"c{i}", f"q{i}?", scorer="contains", golden="answer") for i in range(9)]
    )
    llm.delay = 0.15

    # When
    run = run_now(version, suite_version)

    # Then
    assert run.status == RunStatus.COMPLETED and run.score == 1.0
    assert len(chat_server.requests) == 9
    assert chat_server.max_in_flight == 3


@pytest.mark.django_db(transaction=True)
def test_run__cancelled_mid_run__running_call_finishes_and_nothing_new_starts(
    agent, eval_settings, chat_server, llm
):
    # Given one case at a time, and a colleague who cancels while case 2 is being answered
    eval_settings.EVAL_CONCURRENCY = 1
    version = factories.create_version(agent)
    suite_version = make_suite(
        agent, [case(f"c{i}", f"q{i}?", scorer="contains", golden="answer") for i in range(1, 6)]
    )
    run = suites.start_run(version=version, suite_version=suite_version, actor=ACTOR, enqueue=False)

    def cancel_during_second(body):
        if body["messages"][-1]["content"] == "q2?":
            try:
                suites.cancel_run(run=run, actor=Actor.system("a colleague"))
            finally:
                connection.close()  # this thread's own connection
        return None

    llm.hook = cancel_during_second

    # When
    finished = execute_run(run.pk)

    # Then case 2 (in flight) finished and was kept; cases 3-5 never started
    assert finished.status == RunStatus.CANCELLED and finished.score is None
    assert sorted(_results(finished)) == ["c1", "c2"]
    assert _results(finished)["c2"].score == 1.0
    assert len(chat_server.requests) == 2
    assert finished.cancelled_by_label == "a colleague"


def test_run__cancelled_while_queued__never_calls_the_model(agent, eval_settings, chat_server):
    version = factories.create_version(agent)
    suite_version = make_suite(agent, [case("one", "q?")])
    run = suites.start_run(version=version, suite_version=suite_version, actor=ACTOR, enqueue=False)

    suites.cancel_run(run=run, actor=ACTOR)
    finished = execute_run(run.pk)

    assert finished.status == RunStatus.CANCELLED
    assert chat_server.requests == []


def test_run__executed_again__resumes_without_repeating_cases(agent, eval_settings, chat_server):
    # Given a run whose first case already has a result (a worker died after it)
    version = factories.create_version(agent)
    suite_version = make_suite(
        agent,
        [
            case("one", "q1?", scorer="contains", golden="answer"),
            case("two", "q2?", scorer="contains", golden="answer"),
        ],
    )
    run = suites.start_run(version=version, suite_version=suite_version, actor=ACTOR, enqueue=False)
    CaseResult.objects.create(
        run=run, case=suite_version.cases.get(key="one"), answer="x", score=0.0
    )

    # When
    finished = execute_run(run.pk)

    # Then only the second case was asked
    assert [r["messages"][-1]["content"] for r in chat_server.requests] == ["q2?"]
    assert finished.score == 0.5


def test_start_run__no_endpoint__refused_naming_the_variables(agent, no_endpoint):
    version = factories.create_version(agent)
    suite_version = make_suite(agent, [case("one", "q?", scorer="exact")])

    with pytest.raises(EndpointMissing) as refused:
        suites.start_run(version=version, suite_version=suite_version, actor=ACTOR)

    assert "set EVAL_API_BASE_URL" in refused.value.message
    assert "EVAL_API_KEY" in refused.value.message
    assert EvaluationRun.objects.count() == 0


def test_run__recorded_answers_and_deterministic_scorers__works_without_an_endpoint(
    agent, no_endpoint
):
    # Given
    version = factories.create_version(agent)
    suite_version = make_suite(
        agent,
        [
            case("exact", "q1", golden="42", scorer="exact"),
            case("json", "q2", golden="", scorer="valid_json"),
            case("regex", "q3", golden=r"^\d{3}-\d{4}$", scorer="regex"),
        ],
    )

    # When
    run = run_now(
        version,
        suite_version,
        recorded_answers={"exact": " 42 ", "json": '{"a": 1}', "regex": "call 555"},
    )

    # Then
    assert run.status == RunStatus.COMPLETED
    assert run.answer_source == AnswerSource.RECORDED and not run.is_scorable
    assert run.score == pytest.approx(2 / 3)
    assert _results(run)["regex"].rationale.startswith("The answer does not match")


def test_run__recorded_answers_with_judge_cases__refused_naming_the_cases(agent, no_endpoint):
    version = factories.create_version(agent)
    suite_version = make_suite(agent, [case("judged", "q1"), case("exact", "q2", scorer="exact")])

    with pytest.raises(EndpointMissing) as refused:
        suites.start_run(
            version=version,
            suite_version=suite_version,
            actor=ACTOR,
            recorded_answers={"judged": "a", "exact": "b"},
        )

    assert "1 llm_judge case(s)" in refused.value.message and "judged" in refused.value.message


def test_start_run__recorded_answers_missing_and_unknown_ids__refused(agent, no_endpoint):
    version = factories.create_version(agent)
    suite_version = make_suite(
        agent, [case("a", "q1", scorer="exact"), case("b", "q2", scorer="exact")]
    )

    with pytest.raises(Exception) as refused:
        suites.start_run(
            version=version,
            suite_version=suite_version,
            actor=ACTOR,
            recorded_answers={"a": "x", "c": "y"},
        )

    messages = refused.value.message_dict["answers"]
    assert "no answer for the case(s) b." in messages
    assert "c: not case ids of this suite version." in messages


def test_start_run__version_of_another_agent__refused(agent, eval_settings):
    other = factories.create_agent("other-bot")
    suite_version = make_suite(agent, [case("a", "q1")])

    with pytest.raises(Exception) as refused:
        suites.start_run(
            version=factories.create_version(other), suite_version=suite_version, actor=ACTOR
        )

    assert "is not a version of support-bot" in str(refused.value)


def test_start_run__user_without_permission__forbidden(agent, eval_settings):
    from agentconfig.core.errors import Forbidden

    user = factories.UserFactory()
    user.save()
    suite_version = make_suite(agent, [case("a", "q1")])

    with pytest.raises(Forbidden) as refused:
        suites.start_run(
            version=factories.create_version(agent),
            suite_version=suite_version,
            actor=Actor.of(user),
        )

    assert "evaluations.add_evaluationrun" in refused.value.message
