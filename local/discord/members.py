"""Request Guild Members (gateway op 8) as Discord answers it: its payload rules, the chunks and their limits.

https://discord.com/developers/docs/events/gateway-events#request-guild-members:

- a payload without ``guild_id``, with neither ``query`` nor ``user_ids``, with ``query`` but no ``limit``, with a
  wrong type or a negative ``limit``: close 4001, "an invalid payload for an opcode"
  (topics/opcodes-and-status-codes#gateway-gateway-close-event-codes; discord/discord-api-docs#1372).
- more than 100 ``user_ids`` ("Requesting user_ids will continue to be limited to returning 100 members"; what
  Discord does with more is not documented, so the playground refuses them with 4001: stricter).
- the whole list (``query`` "" and ``limit`` 0) without the GUILD_MEMBERS intent ("GUILD_MEMBERS intent is
  required to request the entire member list"): no answer at all, as Discord behaves
  (discord/discord-api-docs#5855, shardlab/discordrb#53).
- a prefix ``query``: at most 100 members, whatever ``limit`` says ("will return a maximum of 100 members").
- ``presences`` true without GUILD_PRESENCES: chunks without presences ("Otherwise, it will always be false").
- a ``nonce`` over 32 bytes: chunks without a nonce (events/gateway-events#guild-members-chunk: "Nonce can only be
  up to 32 bytes. If you send an invalid nonce it will be ignored").
- the answer: GUILD_MEMBERS_CHUNK events of up to 1,000 members each (``guild_id``, ``members``, ``chunk_index``,
  ``chunk_count``; ``not_found`` for requested ids not in the guild; ``presences`` when asked and allowed;
  ``nonce`` echoed).
- the whole list asked again for the same guild within 30 s ("1 request per guild per bot every 30 seconds",
  changelog "Introducing Rate Limit When Requesting All Guild Members", 2025-08-14): a RATE_LIMITED dispatch
  ``{opcode: 8, retry_after, meta: {guild_id, nonce}}`` instead of chunks (events/gateway-events#rate-limited).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from local.discord.rules import JSON
    from local.discord.world import World

GUILD_MEMBERS = 1 << 1  # https://discord.com/developers/docs/events/gateway#list-of-intents
GUILD_PRESENCES = 1 << 8
CHUNK_SIZE = 1000
MAX_USER_IDS = 100
MAX_QUERY_RESULTS = 100
MAX_NONCE_BYTES = 32


def invalid_request(data: Any) -> str | None:
    """Return why an op-8 payload is invalid (Discord closes with 4001), or ``None`` when it is well formed."""
    if not isinstance(data, dict):
        return "the payload is not an object"
    if not _is_snowflake(data.get("guild_id")):
        return "guild_id must be one guild's id"
    has_query, has_ids = data.get("query") is not None, data.get("user_ids") is not None
    if not has_query and not has_ids:
        return "one of query or user_ids is required"
    if has_query and (not isinstance(data["query"], str) or not _is_count(data.get("limit"))):
        return "query must be a string with an integer limit of 0 or more"
    if "limit" in data and data["limit"] is not None and not _is_count(data["limit"]):
        return "limit must be an integer of 0 or more"
    if has_ids:
        ids = data["user_ids"] if isinstance(data["user_ids"], list) else [data["user_ids"]]
        if not all(_is_snowflake(uid) for uid in ids):
            return "user_ids must be ids"
        if len(ids) > MAX_USER_IDS:
            return f"at most {MAX_USER_IDS} user_ids"
    if data.get("presences") is not None and not isinstance(data["presences"], bool):
        return "presences must be a boolean"
    return None


def wants_whole_list(data: JSON) -> bool:
    """Return whether a request asks for every member (``query`` "" and ``limit`` 0), which needs GUILD_MEMBERS."""
    return data.get("query") == "" and data.get("limit") == 0 and data.get("user_ids") is None


def reply_nonce(data: JSON) -> str | None:
    """Return the nonce to echo: a string of at most 32 bytes, else none (Discord ignores an invalid one)."""
    nonce = data.get("nonce")
    if isinstance(nonce, str) and len(nonce.encode()) <= MAX_NONCE_BYTES:
        return nonce
    return None


def member_chunks(world: World, data: JSON, intents: int) -> list[JSON]:
    """Return the GUILD_MEMBERS_CHUNK payloads answering a valid request (at least one, even when none match)."""
    not_found: list[str] = []
    if data.get("user_ids") is not None:
        raw = data["user_ids"] if isinstance(data["user_ids"], list) else [data["user_ids"]]
        wanted = [str(uid) for uid in raw]
        found = [uid for uid in wanted if uid in world.member_roles]
        not_found = [uid for uid in wanted if uid not in world.member_roles]
    else:
        query, limit = str(data["query"]).lower(), int(data["limit"])
        found = [uid for uid in world.member_roles if _name_starts_with(world, uid, query)]
        if query or limit:  # a prefix returns at most 100; only "" with 0 is the whole list
            found = found[: min(limit or MAX_QUERY_RESULTS, MAX_QUERY_RESULTS)]
    presences = bool(data.get("presences")) and bool(intents & GUILD_PRESENCES)
    nonce = reply_nonce(data)
    batches = [found[i : i + CHUNK_SIZE] for i in range(0, len(found), CHUNK_SIZE)] or [[]]
    chunks: list[JSON] = []
    for index, batch in enumerate(batches):
        chunk: JSON = {
            "guild_id": world.guild_id,
            "members": [world.member(uid) for uid in batch],
            "chunk_index": index,
            "chunk_count": len(batches),
        }
        if not_found and index == 0:
            chunk["not_found"] = not_found
        if presences:
            chunk["presences"] = [_presence(world.guild_id, uid) for uid in batch]
        if nonce is not None:
            chunk["nonce"] = nonce
        chunks.append(chunk)
    return chunks


def _name_starts_with(world: World, user_id: str, query: str) -> bool:
    user = world.users[user_id]
    names = (user.get("username") or "", user.get("global_name") or "")
    return any(name.lower().startswith(query) for name in names)


def _presence(guild_id: str, user_id: str) -> JSON:
    """Return a presence update (events/gateway-events#presence-update); the playground's people are online."""
    return {
        "user": {"id": user_id},
        "guild_id": guild_id,
        "status": "online",
        "activities": [],
        "client_status": {"desktop": "online"},
    }


def _is_snowflake(value: object) -> bool:
    return isinstance(value, str | int) and not isinstance(value, bool) and str(value).isdigit()


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
