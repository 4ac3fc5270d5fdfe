"""The bot image serves from a container: every interface, a data volume its non-root user owns, probes, ports."""

from pathlib import Path

from bot.settings import BotSettings
from tests.dockerfile import arguments, env, healthcheck_command, instructions

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def _last(instruction: str) -> list[str]:
    found = [arguments(rest) for name, rest in instructions(DOCKERFILE) if name == instruction]
    assert found, f"the Dockerfile has no {instruction}"
    return found[-1]


def test_the_image_listens_on_every_interface_and_keeps_data_in_the_volume() -> None:
    values = env(DOCKERFILE)
    settings = BotSettings(_env_file=None, data_dir=values["DATA_DIR"])  # type: ignore[call-arg,arg-type]

    assert (values["WEB_HOST"], values["PLAYGROUND_HOST"]) == ("0.0.0.0", "0.0.0.0")
    assert values["DATA_DIR"] == "/app/data" and _last("VOLUME") == ["/app/data"]
    assert settings.resolved_ledger_path == Path("/app/data/peel.sqlite3")


def test_the_defaults_outside_a_container_stay_on_loopback() -> None:
    settings = BotSettings(_env_file=None)  # type: ignore[call-arg]  # pydantic-settings' init kwarg

    assert (settings.web_host, settings.playground_host) == ("127.0.0.1", "127.0.0.1")


def test_the_image_runs_as_a_user_who_owns_the_data_directory_before_it_is_a_volume() -> None:
    steps = list(instructions(DOCKERFILE))
    user = next(i for i, (name, _) in enumerate(steps) if name == "USER")
    volume = next(i for i, (name, _) in enumerate(steps) if name == "VOLUME")
    chown = next(i for i, (name, rest) in enumerate(steps) if name == "RUN" and "chown" in rest and "/app/data" in rest)

    assert _last("USER") not in (["root"], ["0"])
    assert chown < volume and chown < user  # root chowns it; a named volume copies the owner on first use


def test_the_image_exposes_the_web_and_playground_ports_and_checks_liveness() -> None:
    defaults = BotSettings(_env_file=None)  # type: ignore[call-arg]  # pydantic-settings' init kwarg
    healthcheck = " ".join(healthcheck_command(DOCKERFILE))

    assert set(_last("EXPOSE")) == {str(defaults.web_port), str(defaults.playground_port)}
    assert "/healthz" in healthcheck and str(defaults.web_port) in healthcheck
