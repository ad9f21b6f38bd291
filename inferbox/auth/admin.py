"""The admin's credentials: from ADMIN_PASSWORD, or generated at first start and printed once; stored
only as a scrypt hash."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from inferbox.auth.passwords import generate_password, hash_password, verify_password
from inferbox.store import Store
from inferbox.store.tables import AdminCredential

# Compared against when the username is unknown, so that a wrong username costs as long as a wrong
# password (no oracle for which admin names exist).
_DUMMY_HASH = hash_password("inferbox-no-such-user")


def ensure_admin(store: Store, username: str, password: str | None) -> str | None:
    """Make sure the admin can log in. Returns a generated password when one was just made (the caller
    prints it once), else None. A set ADMIN_PASSWORD replaces the stored hash when it differs."""
    now = datetime.now(UTC)
    with store.session() as session:
        row = session.get(AdminCredential, username)
        if password is not None:
            if row is None:
                session.add(
                    AdminCredential(
                        username=username,
                        password_hash=hash_password(password),
                        created_at=now,
                        updated_at=now,
                    )
                )
            elif not verify_password(password, row.password_hash):
                row.password_hash = hash_password(password)
                row.updated_at = now
            return None
        if row is not None:
            return None
        generated = generate_password()
        session.add(
            AdminCredential(
                username=username, password_hash=hash_password(generated), created_at=now, updated_at=now
            )
        )
        return generated


def check_admin(store: Store, username: str, password: str) -> bool:
    with store.session() as session:
        encoded = session.scalar(
            select(AdminCredential.password_hash).where(AdminCredential.username == username)
        )
    ok = verify_password(password, encoded or _DUMMY_HASH)
    return ok and encoded is not None
