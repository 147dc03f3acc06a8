"""The one exception root of Cypher and its named subclasses.

Every error a user can cause carries a message that says what is wrong and what to do.
"""


class CypherError(Exception):
    """Root of every error Cypher raises on purpose."""


class PresetError(CypherError):
    """A style preset is missing, malformed or out of range."""


class BackendMissingError(CypherError):
    """An optional backend (model, voice, ASR) is not installed."""


class PortError(CypherError):
    """A MIDI or audio port could not be found or opened."""


class ClockError(CypherError):
    """The clock follower cannot give an answer yet (no tempo, transport stopped)."""


class PlanError(CypherError):
    """A verse plan cannot be built or filled."""


class VoiceError(CypherError):
    """Speech synthesis or fitting failed."""


class RenderError(CypherError):
    """The offline render cannot run or write its files."""
