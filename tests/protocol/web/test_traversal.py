"""No request reaches a file outside the store, whatever the path looks like on the wire.

Requests go out over a raw socket, so no client library normalizes `..`, percent-escapes or backslashes first.
Each hostile path is tried unsigned and with a signature that really signs the (decoded) key, so the key checks
are tested on their own and not only behind the HMAC.
"""

import asyncio
import os
import time
from pathlib import Path
from urllib.parse import unquote, urlencode, urlsplit

import pytest

from tests.protocol.web.conftest import SECRET_FILE_TEXT, Served

HOSTILE = [
    "../secret.txt",
    "../../secret.txt",
    "outputs/../../secret.txt",
    "..%2fsecret.txt",
    "..%2Fsecret.txt",
    "%2e%2e/secret.txt",
    "%2E%2E%2Fsecret.txt",
    "%2e%2e%2f%2e%2e%2fsecret.txt",
    "..%5csecret.txt",
    "..\\secret.txt",
    "%252e%252e%252fsecret.txt",
    "./../secret.txt",
    "outputs/%2e%2e/%2e%2e/secret.txt",
    "..%c0%afsecret.txt",
    "%00../secret.txt",
    "/etc/passwd",
    "%2fetc%2fpasswd",
    "//etc/passwd",
]


async def raw_get(served: Served, target: str) -> tuple[int, bytes]:
    """Send `GET target` exactly as written and return the status and the whole response (head and body)."""
    port = urlsplit(served.base_url).port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        response = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    return int(response.split(b" ", 2)[1]), response


def signed_query(served: Served, key: str) -> str:
    exp = int(time.time()) + 600
    # `_sig` signs without validating, as a forger who knew the secret would: the key checks must hold alone.
    return urlencode({"exp": exp, "sig": served.signer._sig(key, exp, None)})


@pytest.mark.parametrize("path", HOSTILE)
async def test_get_never_serves_outside_file_when_path_is_hostile(served: Served, path: str) -> None:
    await served.store.put("outputs/j/00000.png", b"inside")
    queries = ["", "?exp=9999999999&sig=" + "0" * 64]
    for key in {path, unquote(path), unquote(unquote(path))}:
        queries.append("?" + signed_query(served, key))
        queries.append("?" + signed_query(served, key.replace("\\", "/")))
    for query in queries:
        for target in (f"/files/{path}{query}", f"/files{served.secret_file}{query}"):
            status, response = await raw_get(served, target)
            assert status in (400, 403, 404), (target, response[:200])
            assert SECRET_FILE_TEXT.encode() not in response
            assert b"root:" not in response


async def test_get_answers_404_when_signed_key_is_symlink_out_of_root(served: Served) -> None:
    await served.store.put("outputs/j/00000.png", b"inside")
    link_path = served.root / "outputs" / "j" / "00001.png"
    await asyncio.to_thread(os.symlink, served.secret_file, link_path)
    link = served.signer.sign("outputs/j/00001.png", expires_s=60)
    split = urlsplit(link)
    status, response = await raw_get(served, f"{split.path}?{split.query}")
    assert status == 404
    assert SECRET_FILE_TEXT.encode() not in response


async def test_get_answers_404_when_signed_key_is_a_directory(served: Served) -> None:
    await served.store.put("outputs/j/00000.png", b"inside")
    split = urlsplit(served.signer.sign("outputs/j", expires_s=60))
    status, _ = await raw_get(served, f"{split.path}?{split.query}")
    assert status == 404


async def test_secret_file_is_readable_when_asked_directly(served: Served) -> None:
    # Guards the tests above: the secret file exists where they aim, so their refusals mean something.
    assert await asyncio.to_thread(Path(served.secret_file).read_text) == SECRET_FILE_TEXT
    assert served.secret_file.parent == served.root.parent
