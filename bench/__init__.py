"""Load benchmark: the real bot process (`python -m bot`) against rate-limited fakes.

Run ``python -m bench --help``; see ``bench/README.md`` for what each figure means.
"""
