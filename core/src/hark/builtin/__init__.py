"""Plugins that ship inside the core and use the same hooks as any other plugin."""
