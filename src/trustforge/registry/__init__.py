"""The model registry: versions, aliases, tags and lineage over a SQL database and an artifact store.

    reg = Registry()                               # settings and principal from the environment
    mv = reg.register(result.package)              # verified, sealed, version 1, 2, ...
    reg.set_alias(mv.name, "champion", mv.version)
    model = reg.load_model("models:/iris@champion") # decrypted and verified in memory

SQLite in the workspace by default, PostgreSQL when `TRUSTFORGE_DB_URL` names one. Every
operation checks the acting principal and every mutation is written to the audit log.
"""

from trustforge.registry._backup import BACKUP_FORMAT, create_backup, restore_backup
from trustforge.registry._db import create_all, database_errors, lock_registry, make_engine, readonly
from trustforge.registry._names import check_alias, check_name, check_tag_key, format_uri, parse_model_uri
from trustforge.registry._registry import ModelVersion, Registry

__all__ = [
    "Registry",
    "ModelVersion",
    "make_engine",
    "readonly",
    "create_all",
    "database_errors",
    "lock_registry",
    "parse_model_uri",
    "format_uri",
    "check_name",
    "check_alias",
    "check_tag_key",
    "create_backup",
    "restore_backup",
    "BACKUP_FORMAT",
]
