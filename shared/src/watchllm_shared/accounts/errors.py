"""Errors of the accounts module; the CLI and the dashboard turn them into messages."""


class AccountError(Exception):
    """Base class: a request about projects or keys that cannot be carried out."""


class NotFoundError(AccountError):
    pass


class AlreadyExistsError(AccountError):
    pass


class InvalidInputError(AccountError):
    pass
