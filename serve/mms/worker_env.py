"""What the mms engine process hands to multi-model-server's Python workers, through their environment.

The engine sets these variables on the MMS launcher (``serve.mms.config.mms_environment``); Java
passes them on to every worker, where ``serve.mms.service`` reads them when a model loads, never at
import time:

* ``SERVEKIT_MMS_SETTINGS``: the settings a worker needs, as ``Settings.to_json`` writes them.
* ``SERVEKIT_MMS_FAILURE_FILE``: single-model mode only. A worker that cannot load the model writes
  the reason there; the supervisor then stops MMS and exits 1 with that reason, instead of MMS
  retrying the load forever while ``/ping`` keeps answering 200.
* ``SERVEKIT_MMS_BUSY_DIR``: each worker holds a lock on a file there while it runs a request, so
  SIGTERM can wait for in-flight requests (MMS itself would cut them).
* ``SERVEKIT_MMS_REFUSED_DIR``: multi-model mode only. A worker that refused a load for memory
  (507) names the model there; the supervisor removes the registration MMS leaves behind.
* ``SERVEKIT_MMS_ROOT_PID``: the engine process, the root of the tree whose memory counts against
  ``SERVE_MEMORY_LIMIT_MB``.
"""

from __future__ import annotations

import logging
import os

from serve.settings import Settings

log = logging.getLogger(__name__)

SETTINGS_ENV = "SERVEKIT_MMS_SETTINGS"
FAILURE_FILE_ENV = "SERVEKIT_MMS_FAILURE_FILE"
BUSY_DIR_ENV = "SERVEKIT_MMS_BUSY_DIR"
ROOT_PID_ENV = "SERVEKIT_MMS_ROOT_PID"
REFUSED_DIR_ENV = "SERVEKIT_MMS_REFUSED_DIR"

#: The settings a worker needs: what builds its handler (``serve.shared.handler_options``), its log
#: level, request timeout and memory budget. ``memory_limit_mb`` only as set explicitly: without it
#: the kernel's limit applies, and MMS answers 507 when a worker is OOM-killed (exit 137).
WORKER_SETTINGS = ("framework", "program", "submit_directory", "default_accept", "install_requirements",
                   "container_log_level", "tfs_nginx_log_level", "timeout_s", "memory_limit_mb",
                   "max_payload_mb", "max_decoded_mb", "safe_port_range")


def encode_worker_settings(settings: Settings) -> str:
    """The value of ``SETTINGS_ENV`` for ``settings``."""
    return settings.to_json(WORKER_SETTINGS)


def worker_settings_from_env() -> Settings:
    """The settings the engine handed to this worker; the defaults where it handed none (a worker
    started outside the engine) or the value is unreadable."""
    raw = os.environ.get(SETTINGS_ENV)
    if not raw:
        return Settings()
    try:
        return Settings.from_json(raw)
    except (ValueError, TypeError):
        log.error("%s is not valid settings JSON; using defaults", SETTINGS_ENV)
        return Settings()
