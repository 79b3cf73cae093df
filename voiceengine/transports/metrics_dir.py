"""Where the worker processes of ``serve --workers N`` share their Prometheus figures.

The supervisor (:mod:`voiceengine.transports.workers`) chooses the directory and each
worker's :class:`~voiceengine.transports.metrics.PrometheusMetrics` writes there; both read
it through this module, which needs no ``prometheus_client`` (the ``serve`` extra).
"""

from __future__ import annotations

import os

__all__ = ["MULTIPROC_ENV", "multiprocess_dir"]

#: prometheus_client's multiprocess directory variable
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    """The multiprocess directory when several workers share the metrics, else None."""
    path = os.environ.get(MULTIPROC_ENV)
    return path if path else None
