"""chargegw.config: the schema (msgspec Structs), the TOML/env loader and example files."""

from chargegw.config.loader import ENV_CONFIG_FILE, ConfigError, apply_env, load_config
from chargegw.config.schema import (
    Application,
    Config,
    Diameter,
    Identity,
    Launcher,
    Listen,
    Peer,
    Pool,
    Route,
    Worker,
    default_applications,
)

__all__ = [
    "ENV_CONFIG_FILE",
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
    "Worker",
    "apply_env",
    "default_applications",
    "load_config",
]
