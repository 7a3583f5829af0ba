from hark.hookspecs import hookimpl


class CorePlugin:
    """Core: plugin management (`!plugins`, `/plugins`). Always on."""

    @hookimpl
    def register_cogs(self, register):
        from hark.cogs.plugins import PluginsCog

        register(PluginsCog)
