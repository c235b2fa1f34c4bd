"""Keys the app holds: local wallets for people without a browser wallet, and the minter.

Every key on disk is an encrypted V3 keystore (scrypt + AES-128-CTR, the format geth, MetaMask
imports and ``eth_account`` share), written atomically with mode 0600. A local wallet is
decrypted only when its owner signs in with the password; the decrypted key then lives in
memory (``Signers``) for that session alone, so the app can sign the owner's card updates
without a wallet prompt, and it is dropped on sign-out. Passwords and keys are never logged.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import is_address, to_checksum_address

from core.errors import AuthError, NotFoundError, ValidationError
from core.files import atomic_write
from core.settings import Settings

log = logging.getLogger(__name__)

MIN_PASSWORD = 8


def encrypt_key(account: LocalAccount, password: str, scrypt_n: int) -> bytes:
    keystore = Account.encrypt(account.key, password, kdf="scrypt", iterations=scrypt_n)
    return json.dumps(keystore).encode()


def write_keystore(path: Path, blob: bytes) -> None:
    atomic_write(path, blob)
    os.chmod(path, 0o600)


def decrypt_keystore(path: Path, password: str) -> LocalAccount:
    try:
        keystore = json.loads(path.read_text())
        return Account.from_key(Account.decrypt(keystore, password))
    except ValueError as exc:  # eth_keyfile: "MAC mismatch" for a wrong password
        raise AuthError(f"cannot unlock {path.name}: wrong password or damaged keystore") from exc


class LocalWallets:
    """Encrypted keystores under ``<data_dir>/wallets/<address>.json``."""

    def __init__(self, folder: Path, scrypt_n: int) -> None:
        self.folder = folder
        self.scrypt_n = scrypt_n

    def create(self, password: str) -> str:
        """A new random key, encrypted with ``password``; returns its address."""
        if len(password) < MIN_PASSWORD:
            raise ValidationError(f"a wallet password needs at least {MIN_PASSWORD} characters")
        account: LocalAccount = Account.create()
        self.folder.mkdir(parents=True, exist_ok=True)
        write_keystore(self._path(account.address), encrypt_key(account, password, self.scrypt_n))
        log.info("created local wallet %s", account.address)
        return account.address

    def addresses(self) -> list[str]:
        if not self.folder.is_dir():
            return []
        found = []
        for path in sorted(self.folder.glob("0x*.json")):
            if is_address(path.stem):
                found.append(to_checksum_address(path.stem))
        return found

    def unlock(self, address: str, password: str) -> LocalAccount:
        path = self._path(address)
        if not path.is_file():
            raise NotFoundError(f"no local wallet {address}")
        return decrypt_keystore(path, password)

    def _path(self, address: str) -> Path:
        if not is_address(address):
            raise ValidationError(f"{address!r} is not an Ethereum address")
        return self.folder / f"{to_checksum_address(address)}.json"


class Signers:
    """Decrypted local-wallet keys, per signed-in session (memory only)."""

    def __init__(self) -> None:
        self._by_session: dict[str, LocalAccount] = {}
        self._lock = threading.Lock()

    def add(self, session_id: str, account: LocalAccount) -> None:
        with self._lock:
            self._by_session[session_id] = account

    def drop(self, session_id: str) -> None:
        with self._lock:
            self._by_session.pop(session_id, None)

    def for_address(self, address: str | None) -> LocalAccount | None:
        """Any live session's key for ``address`` (``None``: the owner must sign themselves)."""
        if address is None:
            return None
        with self._lock:
            for account in self._by_session.values():
                if account.address.lower() == address.lower():
                    return account
        return None


def load_minter(settings: Settings, is_dev: bool) -> LocalAccount:
    """The minter/relayer key, always from an encrypted keystore.

    Configured: ``ANIMA_CHAIN_MINTER_KEYSTORE`` with ``ANIMA_CHAIN_MINTER_PASSWORD_FILE`` (or
    ``..._PASSWORD``). On a development chain with nothing configured the app makes its own in
    ``<data_dir>/chain/minter-keystore.json``, with a random password in ``minter.password``
    beside it (both 0600), so ``make run`` needs no setup; a real chain must be configured.
    """
    password = _minter_password(settings)
    if settings.chain.minter_keystore is not None:
        if password is None:
            raise ValidationError(
                "ANIMA_CHAIN_MINTER_KEYSTORE needs ANIMA_CHAIN_MINTER_PASSWORD_FILE "
                "(or ANIMA_CHAIN_MINTER_PASSWORD)"
            )
        return decrypt_keystore(settings.chain.minter_keystore, password)
    if not is_dev:
        raise ValidationError(
            "a chain other than anvil/eth-tester needs ANIMA_CHAIN_MINTER_KEYSTORE and its password"
        )
    folder = settings.chain_dir
    keystore, secret = folder / "minter-keystore.json", folder / "minter.password"
    if keystore.is_file() and (password is not None or secret.is_file()):
        return decrypt_keystore(keystore, password or secret.read_text().strip())
    folder.mkdir(parents=True, exist_ok=True)
    if password is None:
        password = secrets.token_urlsafe(24)
        write_keystore(secret, password.encode())
    account: LocalAccount = Account.create()
    write_keystore(keystore, encrypt_key(account, password, settings.auth.keystore_scrypt_n))
    log.info("created the minter account %s (keystore %s)", account.address, keystore)
    return account


def _minter_password(settings: Settings) -> str | None:
    if settings.chain.minter_password_file is not None:
        return settings.chain.minter_password_file.read_text().strip()
    if settings.chain.minter_password is not None:
        return settings.chain.minter_password.get_secret_value()
    return None
