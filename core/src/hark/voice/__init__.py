"""Voice conversation: receive per speaker, detect turns, transcribe, answer aloud, yield.

- :mod:`hark.voice.receive`: the voice client that receives, and survives bad packets.
- :mod:`hark.voice.dave`: DAVE-aware receiving on top of discord-ext-voice-recv.
- :mod:`hark.voice.turns`: per-speaker end-of-utterance detection (webrtcvad + idle timer).
- :mod:`hark.voice.sentences`: cutting a streamed reply into sentences to speak early.
- :mod:`hark.voice.playback`: a queue-fed audio source for discord.py's player.
- :mod:`hark.voice.session`: one server's voice session, tying it all together, with
  the parts it owns: :mod:`~hark.voice.speakers` (per-speaker state),
  :mod:`~hark.voice.barge_in` (talking over the bot), :mod:`~hark.voice.reply`
  (speaking a reply), :mod:`~hark.voice.posts` (posts in the linked channel) and
  :mod:`~hark.voice.warmup` (warming the server's providers).
"""
