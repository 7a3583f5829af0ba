"""The plugins that ship inside the core, loaded like any other plugin.

Each is an entry point of the ``hark`` distribution (``[project.entry-points.hark]``
in core/pyproject.toml), so nothing in the core imports this package:
:meth:`hark.plugins.PluginManager.load_builtins` loads them ahead of every
installed plugin. ``core`` (plugin management) is protected: it can't be disabled
or blocked. ``persona``, ``history``, ``chat``, ``voice`` and ``speech`` can be
switched per server like any plugin, and blocked globally with
``HARK_BLOCK_PLUGINS``; the allow-list does not apply to them.

They find each other through the bot (``bot.chat``, ``bot.voice_sessions``; see
:class:`hark.bot.HarkBot`), never by Cog name.
"""
