"""The ARQ worker: `{{ cookiecutter.project_slug }} worker [--queue bulk] [--burst]`.

process.py is the process (arq's Worker, woken by enqueues); options.py builds its keyword options
from the shared Settings; job_wrapper.py runs each try of a job around its task (records, retries,
dead letters); log_redaction.py keeps job arguments out of arq's log lines; lifecycle.py fills and
empties the ctx that tasks share; heartbeat.py and probe.py give each worker a liveness check of
its own.
"""
