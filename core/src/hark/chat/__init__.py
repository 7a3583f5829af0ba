"""Text conversation: triggers, persona, history, the reply pipeline, streaming to Discord."""
