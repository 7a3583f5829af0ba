"""pytest fixtures for Hark and its plugins (registered through the ``pytest11`` entry point)."""
