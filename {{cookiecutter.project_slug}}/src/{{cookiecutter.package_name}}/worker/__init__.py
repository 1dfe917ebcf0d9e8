"""The ARQ worker: `{{ cookiecutter.project_slug }} worker [--queue bulk] [--burst]`.

wake.py is the process (arq's Worker, woken by enqueues); settings.py builds its settings from the
shared Settings; lifecycle.py fills and empties the ctx that tasks share; heartbeat.py and
probe.py give each worker a liveness check of its own.
"""
