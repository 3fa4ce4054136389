from django.apps import AppConfig


class EvaluationsConfig(AppConfig):
    name = "evaluations"
    verbose_name = "Evaluations"

    def ready(self) -> None:
        # Every release passes the evaluation gate: deployments runs its registered checks.
        from deployments.release_checks import register_release_check
        from evaluations.gate import release_check

        register_release_check("evaluation gate", release_check)
