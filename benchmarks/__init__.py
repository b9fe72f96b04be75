"""The benchmark suite of `make bench`: each figure of the package's real code paths next to
a reference measured in the same run, on the same machine.

`python -m benchmarks --help` lists the size parameters; results go to benchmarks/results.md
and benchmarks/results.json.
"""
