"""Cypher's engine: timebase, timeline, writing, voice, listening and playback."""

__version__ = "0.1.0"
