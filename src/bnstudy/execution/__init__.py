"""Execution: running a protocol's trials and streaming their results to the store.

Owns which trials still need running (resume), the joblib backends (loky locally, Dask on a
cluster), device slots and leases, packing trials into one task, dead-worker retries,
timeouts and progress. ``runner`` runs in the parent and never imports torch (with
``plan``: options to an Execution, ``tasks``: resume and packing, ``retry``: dead workers,
``records``: rows and provenance; ``grow``: rounds of tuning-grid growth); ``worker``
runs in each worker process and imports :mod:`bnstudy.training` there.

May import: the shared vocabulary (``bnstudy.catalogue``, ``bnstudy.atomic``), ``spec``,
``data`` (its torch-free part in the parent), ``store`` and, in workers only, ``training``.
Never ``stats`` or ``report``. This ``__init__`` imports nothing, so importing one module of
the package loads only what that module needs.
"""
