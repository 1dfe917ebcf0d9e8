"""The project's worker with one task more for the benchmark: `word_count_limited`, the example
task under a rate limit and a cap that are never reached, so that the throughput part measures
what the limits' check and a capped job's end cost (queue.limits), and nothing else."""

import asyncio
from dataclasses import replace

import uvloop
from arq import func

from {{ cookiecutter.package_name }}.logs import configure_logging
from {{ cookiecutter.package_name }}.settings import Settings
from {{ cookiecutter.package_name }}.tasks import TASKS, Rate
from {{ cookiecutter.package_name }}.worker.job_wrapper import job_function
from {{ cookiecutter.package_name }}.worker.options import worker_options
from {{ cookiecutter.package_name }}.worker.process import WakingWorker

TASK = replace(
    TASKS["word_count"],
    name="word_count_limited",
    rate=Rate(1_000_000, per=1),
    concurrency=100_000,
)


def main() -> None:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    options = worker_options(settings, "default")
    limited = func(job_function(TASK), name=TASK.name, max_tries=options["functions"][0].max_tries)
    options["functions"] = [*options["functions"], limited]
    asyncio.set_event_loop(uvloop.new_event_loop())
    WakingWorker(**options).run()


if __name__ == "__main__":
    main()
