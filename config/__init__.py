"""chargegw.config: the schema (msgspec Structs), the TOML/env loader and example files."""

from chargegw.config.loader import ENV_CONFIG_FILE, ConfigError, apply_env, load_config
from chargegw.config.schema import (
    Allow,
    Application,
    Config,
    Diameter,
    Identity,
    Launcher,
    Listen,
    Peer,
    Pool,
    Route,
    TlsSettings,
    Worker,
    default_applications,
)

__all__ = [
    "ENV_CONFIG_FILE",
    "Allow",
    "Application",
    "Config",
    "ConfigError",
    "Diameter",
    "Identity",
    "Launcher",
    "Listen",
    "Peer",
    "Pool",
    "Route",
    "TlsSettings",
    "Worker",
    "apply_env",
    "default_applications",
    "load_config",
]
