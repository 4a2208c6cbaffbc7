"""The errors an import raises: each message names the file, the column and example rows."""

from __future__ import annotations

from fusion.log.schema import LogSchemaError


class LogImportError(LogSchemaError):
    """A source cannot be imported as a routing log. The message names the file, the column and example rows."""



class UnknownFormatError(LogImportError):
    """The format name is not registered; the message lists the known ones."""



class SourceNotFoundError(LogImportError, FileNotFoundError):
    """The source file or folder does not exist."""
