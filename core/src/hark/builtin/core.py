"""Core: plugin management (`!plugins`, `/plugins`). Always on."""

from hark.hookspecs import hookimpl


@hookimpl
def register_cogs(register):
    from hark.cogs.config import ConfigCog
    from hark.cogs.plugins import PluginsCog

    register(PluginsCog)
    register(ConfigCog)
