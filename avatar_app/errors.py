"""Errors a user can cause: each carries one line that names the file or device and what to do."""


def first_line(err: BaseException, limit: int | None = None) -> str:
    """The first line of an error's text (cut at ``limit`` characters), or its type's name when it has none, so
    that a reason quoted inside a message keeps the message on one line."""
    text = str(err).strip()
    line = text.splitlines()[0] if text else type(err).__name__
    return line if limit is None else line[:limit]


def shown(value) -> str:
    """A value read from a file, as a message shows it: whole numbers as they are, anything else quoted on one
    line (a file can hold any text, newlines included)."""
    return str(value) if isinstance(value, int) else repr(str(value)[:20])


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


def describe_av_error(err: BaseException) -> str:
    """FFmpeg's reason (as PyAV raises it) without errno or path, e.g. 'Invalid data found when processing input'."""
    text = getattr(err, "strerror", None) or str(err).strip() or type(err).__name__
    return text.splitlines()[0]
