"""Errors of the accounts module; the CLI and the dashboard turn them into messages."""


class AccountError(Exception):
    """Base class: a request about projects or keys that cannot be carried out."""


class NotFoundError(AccountError):
    pass


class AlreadyExistsError(AccountError):
    pass


class InvalidInputError(AccountError):
    pass


class AuthenticationError(AccountError):
    """Wrong username or password, a disabled user, or a locked account (one message for
    all, so a caller cannot tell which usernames exist)."""


class PermissionDeniedError(AccountError):
    """The signed-in user's role does not allow this change."""
