"""The job pipeline: one `/imagine` from its validated request to delivered images.

Read in this order:

* :mod:`bot.jobs.request` — the member's options checked against the catalog into an
  :class:`~bot.jobs.request.ImagineRequest` (and rebuilt from a stored job for buttons).
* :mod:`bot.jobs.records` — the durable job record, its states and every write to it.
* :mod:`bot.jobs.runner` — :class:`~bot.jobs.runner.JobRunner` drives a stored job: submit,
  poll, download, fit, reporting to an observer (the Discord layer implements it).
* :mod:`bot.jobs.polling` — when to ask the image service about a task.
* :mod:`bot.jobs.progress` — what progress a member sees, and how often it may change.
* :mod:`bot.jobs.pacing` — message writes kept under Discord's rate limits.

Nothing here imports discord.
"""
