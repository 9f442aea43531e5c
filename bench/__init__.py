"""The realtime stack's benchmark (issue 6): fan-out latency against a bare floor in the same run, the
connect burst, memory per idle connection, deploy timings; `python -m bench --help`, bench/README.md."""
