"""Downloads from the Hub: resumable, verified transfers and the queue that runs them."""

from app.downloads.manager import DownloadManager, JobView, State, job_id
from app.downloads.transfer import (
    ChecksumMismatch,
    DiskFullError,
    Downloader,
    DownloadError,
    plan,
)

__all__ = [
    "ChecksumMismatch",
    "DiskFullError",
    "DownloadError",
    "DownloadManager",
    "Downloader",
    "JobView",
    "State",
    "job_id",
    "plan",
]
