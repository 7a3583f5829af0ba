"""hark.testing: the offline test kit for Hark and its plugins.

- :mod:`hark.testing.discord`: a loopback Discord-compatible server (REST + gateway)
  that the real discord.py client connects to.
- :mod:`hark.testing.fakes`: scriptable fake providers.
- :mod:`hark.testing.contracts`: contract test suites for provider implementations.
- :mod:`hark.testing.pytest_plugin`: fixtures, registered automatically with pytest.
"""
