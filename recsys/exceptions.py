"""Every exception the xsell library raises on purpose.

Each carries a message that names the bad value and says what to do, so that
the CLI and the service can show it to a user as it is, without a traceback.
"""


class XsellError(Exception):
    """Base class of all xsell errors."""


class DataError(XsellError):
    """Input data cannot be read: missing file, unreadable format, missing column."""


class StrictModeError(DataError):
    """Rows were rejected while ``--strict`` was on."""


class ConfigError(XsellError):
    """A configuration value or command-line option is invalid."""


class NotFittedError(XsellError):
    """A model method was called before ``fit``."""


class ModelLoadError(XsellError):
    """A model version on disk is missing, incomplete, or fails its checksums."""


class NoModelError(ModelLoadError):
    """No current model version exists in the models folder yet."""


class ComponentError(XsellError):
    """A model component was asked for something it cannot do (a query kind it has no
    scores for, a name the registry does not know)."""
