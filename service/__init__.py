"""The bai-sweep service: settings, REST API, worker and the ``bai-sweep`` CLI.

Only this package reads the environment; the other packages take explicit arguments.
"""
