"""The economy tests use the chain tests' fixtures (an app on eth-tester per module)."""

from tests.chain.conftest import chain_app, chain_services  # noqa: F401
