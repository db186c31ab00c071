"""Why a finished job's file or message did not reach its user, in words fit for them."""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Sequence
from pathlib import Path

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


def delete_job_files(folder: Path, job_ids: Sequence[str]) -> int:
    """Delete the saved results of these jobs (named "<slug>-<job id>-seed<N>…"); return how many went."""
    if not job_ids or not folder.is_dir():
        return 0
    # The id right before "seed": a prompt word that happens to look like a job id is not one.
    ours = re.compile(rf"-(?:{'|'.join(re.escape(job_id) for job_id in job_ids)})-seed\d")
    deleted = 0
    for path in folder.iterdir():
        if path.is_file() and ours.search(path.name):
            path.unlink(missing_ok=True)
            deleted += 1
    return deleted
