"""A loopback Discord (REST API v10, gateway, voice) for end-to-end tests of discord.py bots.

Example::

    async with FakeDiscord() as server:
        discord.http.Route.BASE = server.api_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(server.gateway_url)
        guild = server.create_guild("Test Server")
        general = server.create_text_channel(guild, "general")
        alice = server.create_member(guild, "alice")
        ...  # start the bot with server.bot_token
        await server.post_message(general, alice, "!ping")
        reply = await server.wait_for_message(general, author=server.bot_user)

Threads and forum posts (:mod:`.threads`): ``server.create_thread(channel, alice,
"name")``, ``server.create_forum_post(forum, alice, "title", "text")``, then post in
the thread like in any channel. Attachments: ``post_message(..., files=[("cat.png",
data)])``, served on a loopback CDN; link embeds (:mod:`.web`):
``server.publish_image(url, data)`` and a message linking it is unfurled.

Voice (see :mod:`.voice_helpers`): create the bot with
``connector=server.bot_connector()`` so it trusts the voice server's TLS
certificate, then ``server.speak(member, pcm)`` and ``server.bot_audio(guild)``.
DAVE end-to-end encryption is on by default, as on Discord
(``FakeDiscord(dave=False)`` turns it off): fake members are real DAVE clients
(``server.voice_member(member)``) and ``server.dave_call(channel)`` is the
voice gateway's side of the MLS group.

Sharding (:mod:`.gateway`): ``FakeDiscord(shard_count=2, max_concurrency=1)``;
``server.create_guild("Two", shard=1)`` makes a server whose events go to shard 1
(``guild_id_on_shard(1, 2)`` mints such an id without a server), DMs go to shard
0, ``await server.wait_for_shards()`` waits for every shard's session, and
``server.refused_identifies`` lists the IDENTIFYs refused for ignoring
``max_concurrency``.
"""

from . import permissions
from .base import RequestLog
from .gateway import GatewayEvent, GatewaySession, IdentifyRecord
from .interaction_record import CommandNotAvailable, InteractionRecord
from .messages import TypingRecord
from .permissions import (
    ADMINISTRATOR,
    ALL_PERMISSIONS,
    ATTACH_FILES,
    CONNECT,
    DEFAULT_BOT_PERMISSIONS,
    DEFAULT_EVERYONE_PERMISSIONS,
    EMBED_LINKS,
    MANAGE_GUILD,
    MANAGE_MESSAGES,
    MANAGE_ROLES,
    MENTION_EVERYONE,
    READ_MESSAGE_HISTORY,
    SEND_MESSAGES,
    SPEAK,
    USE_APPLICATION_COMMANDS,
    VIEW_CHANNEL,
)
from .rest import DelayRule, FaultRule
from .server import FakeDiscord
from .snowflakes import guild_id_on_shard, shard_of
from .state import (
    AppCommandRecord,
    AttachmentRecord,
    ChannelRecord,
    GuildRecord,
    MemberRecord,
    MessageRecord,
    Overwrite,
    RoleRecord,
    UserRecord,
)
from .voice import VoiceStateRecord
from .voice_dave import CommitRecord, DaveCall, KeyPackageRecord, TransitionRecord
from .voice_member import FakeVoiceMember
from .voice_records import BotAudioPacket, SpeakingEvent, SpokenAudio, VoiceConnectionRecord
from .waiters import WaitTimeout, eventually
from .web import WebResource

__all__ = [
    "ADMINISTRATOR",
    "ALL_PERMISSIONS",
    "ATTACH_FILES",
    "CONNECT",
    "DEFAULT_BOT_PERMISSIONS",
    "DEFAULT_EVERYONE_PERMISSIONS",
    "EMBED_LINKS",
    "MANAGE_GUILD",
    "MANAGE_MESSAGES",
    "MANAGE_ROLES",
    "MENTION_EVERYONE",
    "READ_MESSAGE_HISTORY",
    "SEND_MESSAGES",
    "SPEAK",
    "USE_APPLICATION_COMMANDS",
    "VIEW_CHANNEL",
    "AppCommandRecord",
    "AttachmentRecord",
    "BotAudioPacket",
    "ChannelRecord",
    "CommandNotAvailable",
    "CommitRecord",
    "DaveCall",
    "DelayRule",
    "FakeDiscord",
    "FakeVoiceMember",
    "FaultRule",
    "GatewayEvent",
    "GatewaySession",
    "GuildRecord",
    "IdentifyRecord",
    "InteractionRecord",
    "KeyPackageRecord",
    "MemberRecord",
    "MessageRecord",
    "Overwrite",
    "RequestLog",
    "RoleRecord",
    "SpeakingEvent",
    "SpokenAudio",
    "TransitionRecord",
    "TypingRecord",
    "UserRecord",
    "VoiceConnectionRecord",
    "VoiceStateRecord",
    "WaitTimeout",
    "WebResource",
    "eventually",
    "guild_id_on_shard",
    "permissions",
    "shard_of",
]
