"""API keys: what is shown, what is stored, how a presented key is found and compared."""

from __future__ import annotations

from inferbox.auth import apikeys


def test_a_key_is_random_shown_once_and_stored_only_as_a_salted_hash() -> None:
    key, stored = apikeys.generate()
    other, stored_other = apikeys.generate()
    assert key.startswith("pk_live_") and len(key) == len("pk_live_") + 43 and key != other
    assert key not in (stored.key_hash, stored.salt, stored.lookup_id, stored.masked)
    assert stored.salt != stored_other.salt
    assert stored.masked == f"pk_live_{key[8:12]}…"
    assert apikeys.lookup_id(key) == stored.lookup_id
    assert apikeys.matches(key, stored.salt, stored.key_hash)


def test_a_wrong_key_does_not_match_and_non_keys_have_no_lookup_id() -> None:
    key, stored = apikeys.generate()
    flipped = key[:-1] + ("A" if key[-1] != "A" else "B")
    assert apikeys.lookup_id(flipped) == stored.lookup_id
    assert not apikeys.matches(flipped, stored.salt, stored.key_hash)
    assert not apikeys.matches(key, "another-salt", stored.key_hash)
    for text in ("", "pk_live_short", "not-a-key", "pk_test_" + key[8:], "pk_live_" + "x" * 200):
        assert apikeys.lookup_id(text) is None
