"""hark.testing: the offline test kit for Hark and its plugins.

- :mod:`hark.testing.discord`: a loopback Discord-compatible server (REST + gateway)
  that the real discord.py client connects to.
- :mod:`hark.testing.fakes`: scriptable fake providers.
- :mod:`hark.testing.contracts`: contract test suites for provider implementations.
- :mod:`hark.testing.loopback`: :class:`~hark.testing.loopback.LoopbackServer`, the
  base of a loopback fake of an HTTP service (start/close/``async with``, ``url``,
  scripted failures with :class:`~hark.testing.loopback.FailureQueue`), and
  :func:`~hark.testing.loopback.unused_port`.
- :mod:`hark.testing.harness`: :class:`~hark.testing.harness.BotHarness`, the real bot
  against the loopback Discord server.
- :mod:`hark.testing.processes`: the ``bot`` command as real processes
  (:class:`~hark.testing.processes.BotProcess`, ``run_bot``, ``fake_distribution``).
- :mod:`hark.testing.pytest_plugin`: fixtures, registered automatically with pytest.
"""
