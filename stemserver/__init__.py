"""stemserver: find the stem that fits a mix."""

__version__ = "0.1.0"
