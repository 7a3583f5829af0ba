"""Discord's JSON error responses, raised inside handlers and rendered by ``rest.py``."""

from __future__ import annotations

from typing import Any


class APIError(Exception):
    """An error response: HTTP status, Discord JSON error code and message."""

    def __init__(
        self, status: int, code: int, message: str, errors: dict[str, Any] | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors

    def body(self) -> dict[str, Any]:
        data: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors:
            data["errors"] = self.errors
        return data


def unauthorized() -> APIError:
    return APIError(401, 0, "401: Unauthorized")


def not_found_route() -> APIError:
    return APIError(404, 0, "404: Not Found")


def unknown_channel() -> APIError:
    return APIError(404, 10003, "Unknown Channel")


def unknown_guild() -> APIError:
    return APIError(404, 10004, "Unknown Guild")


def unknown_member() -> APIError:
    return APIError(404, 10007, "Unknown Member")


def unknown_message() -> APIError:
    return APIError(404, 10008, "Unknown Message")


def unknown_user() -> APIError:
    return APIError(404, 10013, "Unknown User")


def unknown_webhook() -> APIError:
    return APIError(404, 10015, "Unknown Webhook")


def unknown_command() -> APIError:
    return APIError(404, 10063, "Unknown application command")


def unknown_interaction() -> APIError:
    return APIError(404, 10062, "Unknown interaction")


def missing_access() -> APIError:
    return APIError(403, 50001, "Missing Access")


def missing_permissions() -> APIError:
    return APIError(403, 50013, "Missing Permissions")


def cannot_dm() -> APIError:
    return APIError(403, 50007, "Cannot send messages to this user")


def cannot_edit_others() -> APIError:
    return APIError(403, 50005, "Cannot edit a message authored by another user")


def empty_message() -> APIError:
    return APIError(400, 50006, "Cannot send an empty message")


def already_acknowledged() -> APIError:
    return APIError(400, 40060, "Interaction has already been acknowledged.")


def invalid_form_body(errors: dict[str, Any]) -> APIError:
    return APIError(400, 50035, "Invalid Form Body", errors)


def field_error(path: str, code: str, message: str) -> APIError:
    """A 50035 error for one field; ``path`` is dotted, e.g. ``"embeds.0.title"``."""
    errors: dict[str, Any] = {"_errors": [{"code": code, "message": message}]}
    for part in reversed(path.split(".")):
        errors = {part: errors}
    return invalid_form_body(errors)
