"""Errors a user is meant to read, shared by the services and the Discord layer (pure: imports nothing).

UserFacingError        `user_message` says what went wrong and what to do; `title` heads the error embed
├── BatchError         a batch that cannot be planned or started (bot.app.batchplan)
├── GenerationError    an /imagine or single-image request Peel cannot make (bot.app.generation_types)
└── GroupError         a group action that cannot be done (bot.app.groups)
"""


class UserFacingError(Exception):
    """An error whose message is meant for the user (e.g. a malformed parameter)."""

    def __init__(self, user_message: str, *, title: str = "Can't do that") -> None:
        super().__init__(user_message)
        self.user_message = user_message
        self.title = title
