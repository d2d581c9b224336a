"""Tokens at rest: Fernet ciphertexts under keys derived from ``TTMINIS_SECRET_KEY``.

Older keys (``TTMINIS_PREVIOUS_SECRET_KEYS``) still decrypt while a rotation is under way; new
ciphertexts always use the current key. Sessions get a key of their own from the same secret,
so neither use can forge the other.
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["InvalidToken", "TokenCipher", "derive_fernet"]


def derive_fernet(secret: str, purpose: str) -> Fernet:
    """A Fernet key for one ``purpose``, derived from ``secret`` with HKDF-SHA256."""
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"tiktok-minis", info=purpose.encode()
    ).derive(secret.encode())
    return Fernet(base64.urlsafe_b64encode(key))


class TokenCipher:
    """Encrypts and decrypts short secrets (access and refresh tokens) for storage."""

    def __init__(self, secrets: list[str], purpose: str = "tokens-at-rest") -> None:
        if not secrets:
            raise ValueError("at least one secret key is needed")
        self._fernet = MultiFernet([derive_fernet(secret, purpose) for secret in secrets])

    def encrypt(self, plaintext: str) -> str:
        """The ciphertext of ``plaintext`` under the current key."""
        return self._fernet.encrypt(plaintext.encode()).decode("ascii")

    def decrypt(self, ciphertext: str, ttl: int | None = None) -> str:
        """The plaintext; raises :class:`InvalidToken` if tampered, foreign or older than ttl."""
        return self._fernet.decrypt(ciphertext.encode("ascii"), ttl=ttl).decode()
