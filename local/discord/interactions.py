"""The playground's interactions: a user's command, click or modal submit, and the bot's callbacks and follow-ups."""

from __future__ import annotations

import asyncio

from local.discord.channels import ChannelWorld
from local.discord.records import (
    ALL_PERMISSIONS,
    APPLICATION_COMMAND,
    AUTOCOMPLETE,
    AUTOCOMPLETE_RESULT,
    CHANNEL_MESSAGE,
    DEFERRED_CHANNEL_MESSAGE,
    DEFERRED_UPDATE,
    DM,
    EPHEMERAL,
    LOADING,
    MESSAGE_COMPONENT,
    MODAL,
    MODAL_SUBMIT,
    UPDATE_MESSAGE,
    Interaction,
    Upload,
    choice_error,
)
from local.discord.rules import JSON, ApiError, check_modal


class InteractionWorld(ChannelWorld):
    """The guild with its channels and messages, and the interactions users start in them."""

    # ----------------------------------------------------------- interactions
    def start_interaction(
        self, itype: int, user_id: str, channel_id: str, data: JSON, *, message: JSON | None = None
    ) -> Interaction:
        """Create an interaction as a user action and dispatch INTERACTION_CREATE."""
        channel = self.channels.get(channel_id)
        if channel is None:
            raise KeyError(f"no channel {channel_id}")
        iid = self.ids.next()
        token = f"aW50ZXJhY3Rpb246{iid}:{self.ids.next()}"
        payload: JSON = {
            "id": iid,
            "application_id": self.app_id,
            "type": itype,
            "data": data,
            "channel_id": channel_id,
            "channel": channel,
            "token": token,
            "version": 1,
            "app_permissions": ALL_PERMISSIONS,
            "locale": "en-US",
            "entitlements": [],
            "attachment_size_limit": self.upload_limit,
        }
        if channel["type"] == DM:
            payload["user"] = self.users[user_id]
            payload["context"] = 1
            payload["authorizing_integration_owners"] = {"1": user_id}
        else:
            payload["guild_id"] = self.guild_id
            payload["guild"] = {"id": self.guild_id, "locale": "en-US", "features": []}
            payload["guild_locale"] = "en-US"
            payload["member"] = self.member(user_id, with_permissions=True)
            payload["context"] = 0
            payload["authorizing_integration_owners"] = {"0": self.guild_id}
        if message is not None:
            payload["message"] = message
        interaction = Interaction(iid, token, itype, user_id, channel_id, payload, self.clock())
        self.interactions[iid] = interaction
        self._by_token[token] = iid
        self.emit("INTERACTION_CREATE", payload, visible_to=user_id)
        self._schedule_deadline(interaction)
        return interaction

    def _schedule_deadline(self, interaction: Interaction) -> None:
        """Mark the interaction failed ("This interaction failed") if nothing answers within the deadline."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return

        def check() -> None:
            if not interaction.acked and not interaction.failed:
                interaction.failed = True
                self.emit(
                    "PLAYGROUND_INTERACTION_FAILED",
                    {"id": interaction.id, "user_id": interaction.user_id, "channel_id": interaction.channel_id},
                    gateway=False,
                    visible_to=interaction.user_id,
                )

        loop.call_later(self.interaction_deadline_s + 0.05, check)

    def interaction_by_token(self, token: str) -> Interaction:
        """Return the live interaction of a webhook token, or raise what Discord answers."""
        iid = self._by_token.get(token)
        if iid is None:
            raise ApiError(404, 10015, "Unknown Webhook")
        interaction = self.interactions[iid]
        if self.clock() - interaction.created_at > self.token_lifetime_s:
            raise ApiError(401, 50027, "Invalid Webhook Token")
        return interaction

    def respond(self, interaction_id: str, token: str, body: JSON, files: dict[int, Upload]) -> JSON:
        """Apply an interaction callback and return the InteractionCallbackResponse body.

        Raises:
            ApiError: 10062 for unknown, expired or late (past the deadline) interactions, 40060 when it was
                already acknowledged, 50035 for an invalid callback type or body.
        """
        interaction = self.interactions.get(interaction_id)
        if interaction is None or interaction.token != token:
            raise ApiError(404, 10062, "Unknown interaction")
        latency = self.clock() - interaction.created_at
        if interaction.acked:
            raise ApiError(400, 40060, "Interaction has already been acknowledged.")
        if latency > self.interaction_deadline_s:
            interaction.failed = True
            raise ApiError(404, 10062, "Unknown interaction")
        ctype = body.get("type")
        data = body.get("data") or {}
        allowed = _CALLBACKS_FOR.get(interaction.type, frozenset())
        if ctype not in allowed:
            raise ApiError(400, 50035, "Invalid Form Body", {"type": {"_errors": [choice_error(allowed)]}})
        msg: JSON | None = None
        if ctype in (CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE):
            message_type = 20 if interaction.type == APPLICATION_COMMAND else 0
            msg = self.create_message(
                interaction.channel_id,
                self.bot_user,
                data,
                files,
                message_type=message_type,
                webhook=True,
                interaction=interaction,
                loading=ctype == DEFERRED_CHANNEL_MESSAGE,
            )
            interaction.original_id = msg["id"]
        elif ctype in (DEFERRED_UPDATE, UPDATE_MESSAGE):
            source = interaction.payload.get("message")
            target = self.messages.get(source["id"]) if source else None
            if target is None:
                raise ApiError(404, 10008, "Unknown Message")
            if ctype == UPDATE_MESSAGE:
                self.edit_message(target, data, files)
            interaction.original_id = target["id"]
            msg = target
        elif ctype == MODAL:
            check_modal(data)
            interaction.modal = data
            self.emit(
                "PLAYGROUND_MODAL",
                {"interaction_id": interaction.id, "user_id": interaction.user_id, "modal": data},
                gateway=False,
                visible_to=interaction.user_id,
            )
        elif ctype == AUTOCOMPLETE_RESULT:
            interaction.choices = list(data.get("choices") or [])
        interaction.acked = True
        interaction.callback_type = ctype
        interaction.callback = body
        interaction.ack_latency_s = latency
        self.emit(
            "PLAYGROUND_INTERACTION_ACK",
            {"id": interaction.id, "type": ctype, "user_id": interaction.user_id},
            gateway=False,
            visible_to=interaction.user_id,
        )
        out: JSON = {
            "interaction": {
                "id": interaction.id,
                "type": interaction.type,
                "response_message_id": interaction.original_id,
                "response_message_loading": ctype == DEFERRED_CHANNEL_MESSAGE,
                "response_message_ephemeral": bool(msg and msg["flags"] & EPHEMERAL),
            }
        }
        if msg is not None and ctype in (CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, UPDATE_MESSAGE):
            out["resource"] = {"type": ctype, "message": msg}
        return out

    def followup(self, token: str, body: JSON, files: dict[int, Upload], *, thread_id: str | None = None) -> JSON:
        """Send an interaction follow-up; the first one after a "thinking" defer replaces the loading message."""
        interaction = self.interaction_by_token(token)
        if not interaction.acked:
            raise ApiError(404, 10015, "Unknown Webhook")
        original = self.messages.get(interaction.original_id or "")
        if original is not None and original["flags"] & LOADING and not interaction.followed_up and thread_id is None:
            interaction.followed_up = True
            return self.edit_message(original, body, files)
        interaction.followed_up = True
        msg = self.create_message(
            thread_id or interaction.channel_id,
            self.bot_user,
            body,
            files,
            webhook=True,
            interaction=interaction,
        )
        interaction.followups.append(msg["id"])
        return msg

    def webhook_message(self, token: str, message_id: str) -> JSON:
        """Return ``@original`` or a follow-up of an interaction, or raise 10008."""
        interaction = self.interaction_by_token(token)
        if message_id == "@original":
            message_id = interaction.original_id or ""
        elif message_id not in (interaction.original_id, *interaction.followups):
            raise ApiError(404, 10008, "Unknown Message")
        msg = self.messages.get(message_id)
        if msg is None:
            raise ApiError(404, 10008, "Unknown Message")
        return msg


_CALLBACKS_FOR: dict[int, frozenset[int]] = {
    APPLICATION_COMMAND: frozenset({CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, MODAL}),
    MESSAGE_COMPONENT: frozenset({CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, DEFERRED_UPDATE, UPDATE_MESSAGE, MODAL}),
    AUTOCOMPLETE: frozenset({AUTOCOMPLETE_RESULT}),
    MODAL_SUBMIT: frozenset({CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, DEFERRED_UPDATE, UPDATE_MESSAGE}),
}
