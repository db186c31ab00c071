"""Why a finished job's file or message did not reach its user, in words fit for them."""

from __future__ import annotations

import errno
import os

from bot.errors import BotError


# The output folder's faults users hit; the rest are named by the OS.
DISK_ERRORS = {
    errno.ENOSPC: "the output folder's disk is full",
    errno.EDQUOT: "the output folder is over its disk quota",
    errno.EFBIG: "the file is over the size this machine allows",
    errno.EACCES: "the output folder is not writable",
    errno.EPERM: "the output folder is not writable",
    errno.EROFS: "the output folder is on a read-only disk",
}


def delivery_failure(error: Exception) -> str:
    """Why a file or message did not reach the user, in words fit for them (never the platform's raw payload)."""
    if isinstance(error, BotError):
        return error.user_message
    if isinstance(error, OSError) and error.errno is not None:
        return DISK_ERRORS.get(error.errno, f"the file could not be saved ({os.strerror(error.errno).lower()})")
    status = getattr(error, "status", None)
    return f"the platform refused the upload (HTTP {status})" if isinstance(status, int) else f"the upload failed ({error.__class__.__name__})"

