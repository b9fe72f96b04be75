"""Promotion: the blessing decision, registration and the champion alias."""
