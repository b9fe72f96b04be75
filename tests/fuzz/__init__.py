"""Fuzz targets for the readers of untrusted files (issue 19) and their runner.

`python -m tests.fuzz <target> --seconds N` fuzzes one target with atheris (libFuzzer);
`make fuzz` runs every target; tests/fuzz/test_fuzz.py runs each for a few seconds and replays
the crash inputs kept in tests/fuzz/crashes/<target>/. Nothing here imports danq at package
import time: the runner's worker must import it under atheris' instrumentation.
"""
