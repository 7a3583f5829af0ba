"""A bot upgraded from the plugin's first version keeps every server's greeting: the old
`!greeting TEXT` command stored it with the raw settings API (``PluginSettings``), in the
same row (namespace ``hello``, scope ``guild:<id>``, key ``greeting``) the declared
``HelloSettings`` reads."""

from __future__ import annotations

import hark_example_hello as hello

from hark.testing.harness import BotHarness


async def test_a_greeting_stored_by_the_old_command_is_kept(tmp_path):
    async with BotHarness(tmp_path, plugins={"hello": hello.plugin}) as h:
        cog = h.bot.get_cog("Hello")
        # Exactly what the old `!greeting Howdy` did.
        await cog.settings.guild(h.guild.id).set("greeting", "Howdy")
        await h.restart()

        assert (await h.ask("!hello")).content == "Howdy, alice!"
        shown = await h.ask("!config hello")
        assert "`greeting` = `Howdy` (this server)" in shown.content
