"""Cypher's bridge to the DAW: MIDI clock and ports, Link, OSC, controller mapping."""
