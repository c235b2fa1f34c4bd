"""Alembic environment: runs migrations on the connection Anima hands in (or the URL)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import engine_from_config, pool

# Each package's records module registers its tables on Base.metadata when imported; the
# imports are here so that autogenerate compares the database against those tables.
import agents.finetune.records  # fine-tuning runs and adapter versions
import agents.llm.connections  # model connections and the run-time default model
import agents.lorebooks  # standalone lorebooks and their agents
import agents.records  # noqa: F401  (agents, conversations, messages)
import chain.records  # noqa: F401  (sessions, API keys, transactions, follower cursor)
import core.job_records  # noqa: F401
import economy.shares_records  # noqa: F401  (revenue-share tokens)
import knowledge.records  # noqa: F401
import usage.records  # noqa: F401  (metered requests)
import voice.records  # noqa: F401  (voice profiles)
from core.db import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(
            connection=connection, target_metadata=target_metadata, render_as_batch=True
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = engine_from_config(
        config.get_section(config.config_ini_section, {}),
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
