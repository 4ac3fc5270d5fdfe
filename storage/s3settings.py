"""The `STORAGE_*` settings an `s3://` store reads when its URL does not carry them.

They are a settings class rather than loose `os.environ` look-ups so that `.env.example`, generated from the
settings classes, lists them with their help. They are read from the process environment only, not from `.env`:
stores are opened inside the event loop, where reading a file would block it; `python -m bot` copies them from
`.env` into its environment at start (`bot.settings.export_storage_env`). Values in the store URL's query
(`?endpoint=…&region=…`) win over these.
"""

from collections.abc import Mapping

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

ENV_PREFIX = "STORAGE_"


class S3Settings(BaseSettings):
    """Where and as whom an `s3://` store connects; unset credentials leave boto3's default chain to find them."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    endpoint_url: str | None = Field(
        default=None, description="an S3-compatible endpoint (R2, MinIO), https://…; unset: AWS S3"
    )
    region: str | None = Field(default=None, description="the bucket's region (us-east-1; auto for R2)")
    access_key_id: str | None = Field(
        default=None, description="the access key id; unset: boto3's default chain (AWS_*, an instance role)"
    )
    secret_access_key: SecretStr | None = Field(default=None, description="the secret access key")
    session_token: SecretStr | None = Field(default=None, description="a session token, for temporary credentials")
    addressing_style: str | None = Field(
        default=None, description="path, virtual or auto; unset: path with STORAGE_ENDPOINT_URL, else auto"
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "S3Settings":
        """Read the settings from the environment, or from `env` alone when it is given (tests)."""
        if env is None:
            return cls()
        given = {name: env[ENV_PREFIX + name.upper()] for name in cls.model_fields if ENV_PREFIX + name.upper() in env}
        return _GivenS3Settings.model_validate(given)


class _GivenS3Settings(S3Settings):
    """`S3Settings` built from the values given to it only: the environment is not read."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def reveal(value: SecretStr | None) -> str | None:
    """Return a secret setting as text, or None when it is unset or empty."""
    return (value.get_secret_value() if value is not None else None) or None
