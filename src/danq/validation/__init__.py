"""The data gate: nothing trains on DeepSEA-format data that fails it.

One streaming pass per split (bounded chunks, memory independent of N) reduces the data to
three summary tables; every verdict, structural or statistical, is a Great Expectations
expectation over these tables. A failing expectation is mapped back to plain words naming the
file, samples and targets. Outputs: report.json, the tables as CSV, and GE Data Docs (HTML).

| module | owns |
|---|---|
| suite | the expectations (`gate_suite`), the tables they run over and their row keys |
| scan | the streaming pass over each split: one-hot, labels, reverse complements, leakage |
| tables | the splits / targets / chunks summary tables built from the scans |
| expectations | running the suite with Great Expectations; the Data Docs |
| report | `Check`, `ValidationReport` and the plain-words explanation of each failure |
| gate | `validate_dataset`: the above in order, outputs published as one folder |
"""
