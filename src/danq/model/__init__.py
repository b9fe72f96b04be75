"""The network: DanQ presets and random-rate dropout."""
