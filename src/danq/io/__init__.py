"""Input/output: local and gs:// storage, DeepSEA .mat files, the bundle download."""
