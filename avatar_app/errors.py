"""Errors a user can cause: each carries one line that names the file or device and what to do."""


class AvatarAppError(Exception):
    """A problem with the user's input or machine. The CLI prints ``str(err)`` and exits with code 2."""


class InputFileError(AvatarAppError):
    """A file the user gave cannot be used (missing, unreadable, wrong kind, corrupt)."""


class NoFaceError(AvatarAppError):
    """No face was found where one is needed (a portrait, or a whole driver video)."""


class DeviceError(AvatarAppError):
    """A camera or virtual camera cannot be opened."""


class OutputPathError(AvatarAppError):
    """An output path cannot be written."""
