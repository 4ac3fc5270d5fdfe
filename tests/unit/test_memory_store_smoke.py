import pytest

from storage import InvalidKeyError, ObjectNotFoundError, open_store


async def test_put_then_get_returns_bytes_when_memory_store() -> None:
    store = open_store("memory://")
    await store.put("a/b.png", b"xyz")
    assert await store.get_bytes("a/b.png") == b"xyz"
    with pytest.raises(ObjectNotFoundError):
        await store.get_bytes("a/c.png")
    with pytest.raises(InvalidKeyError):
        await store.put("../x", b"")
