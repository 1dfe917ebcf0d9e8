"""The ARQ worker: `arq {{ cookiecutter.package_name }}.worker.settings.WorkerSettings`.

settings.py builds arq's WorkerSettings from the shared Settings; lifecycle.py fills and empties the
ctx that tasks share; heartbeat.py and probe.py give each worker a liveness check of its own.
"""
