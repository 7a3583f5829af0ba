"""ElevenLabs text to speech for Hark."""
