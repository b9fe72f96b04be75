"""The data gate: a Great Expectations suite over streamed summary tables."""
