"""The dirty errors: what a dirty call raises in the caller.

Names, constructors and attributes are gunicorn 25's (gunicorn.dirty.errors)
so that `except DirtyAppError as e: e.traceback` code keeps working.  An
ERROR message from the arbiter, {"error_type", "message", "details"}, becomes
an instance with error_from_wire() (DirtyError.from_dict() does the same from
the dict).  Never raises itself on a malformed error: unknown types become
DirtyError.
"""


class DirtyError(Exception):
    """Base class of every dirty error."""

    def __init__(self, message, details=None):
        self.message = message
        self.details = details or {}
        super().__init__(message)

    def __str__(self):
        if self.details:
            return "%s: %s" % (self.message, self.details)
        return str(self.message)

    def to_dict(self):
        return {"error_type": type(self).__name__, "message": self.message,
                "details": self.details}

    @classmethod
    def from_dict(cls, data):
        data = data if isinstance(data, dict) else {}
        return error_from_wire(data.get("error_type", "DirtyError"),
                               data.get("message", "Unknown error"),
                               data.get("details"))


class DirtyTimeoutError(DirtyError):
    """The call did not finish within its timeout."""

    def __init__(self, message="Operation timed out", timeout=None):
        super().__init__(message, {"timeout": timeout} if timeout else {})
        self.timeout = timeout


class DirtyConnectionError(DirtyError):
    """The dirty arbiter could not be reached, or the connection broke."""

    def __init__(self, message="Connection failed", socket_path=None):
        super().__init__(message, {"socket_path": socket_path} if socket_path else {})
        self.socket_path = socket_path


class DirtyWorkerError(DirtyError):
    """The dirty worker failed (for example died) while serving the call."""

    def __init__(self, message, worker_id=None, traceback=None):
        details = {}
        if worker_id is not None:
            details["worker_id"] = worker_id
        if traceback:
            details["traceback"] = traceback
        super().__init__(message, details)
        self.worker_id = worker_id
        self.traceback = traceback


class DirtyAppError(DirtyError):
    """The app's action raised: message is str(exception), traceback the
    remote traceback text."""

    def __init__(self, message, app_path=None, action=None, traceback=None):
        details = {}
        if app_path:
            details["app_path"] = app_path
        if action:
            details["action"] = action
        if traceback:
            details["traceback"] = traceback
        super().__init__(message, details)
        self.app_path = app_path
        self.action = action
        self.traceback = traceback


class DirtyAppNotFoundError(DirtyAppError):
    """No dirty app of that import path is configured."""

    def __init__(self, app_path):
        super().__init__("Dirty app not found: %s" % app_path, app_path=app_path)


class DirtyNoWorkersAvailableError(DirtyError):
    """No dirty worker that loads the app is up right now."""

    def __init__(self, app_path, message=None):
        if message is None:
            message = "No workers available for app: %s" % app_path
        super().__init__(message, {"app_path": app_path})
        self.app_path = app_path


class DirtyProtocolError(DirtyError):
    """A malformed message."""

    def __init__(self, message="Protocol error", raw_data=None):
        details = {}
        if raw_data is not None:
            if isinstance(raw_data, (bytes, bytearray)):
                raw_data = bytes(raw_data[:100]).hex()
            details["raw_data"] = str(raw_data)[:200]
        super().__init__(message, details)


class StashError(DirtyError):
    """A stash operation failed."""


class StashTableNotFoundError(StashError):
    """The stash table does not exist."""

    def __init__(self, table_name):
        self.table_name = table_name
        super().__init__("Stash table not found: %s" % (table_name,))


class StashKeyNotFoundError(StashError):
    """The key is not in the stash table."""

    def __init__(self, table_name, key):
        self.table_name = table_name
        self.key = key
        super().__init__("Key not found in %s: %s" % (table_name, key))


ERROR_CLASSES = {c.__name__: c for c in (
    DirtyError, DirtyTimeoutError, DirtyConnectionError, DirtyWorkerError,
    DirtyAppError, DirtyAppNotFoundError, DirtyNoWorkersAvailableError,
    DirtyProtocolError, StashError, StashTableNotFoundError,
    StashKeyNotFoundError)}

# details key -> attribute, per class (what the constructors set)
_ATTRS = {
    DirtyTimeoutError: ("timeout",),
    DirtyConnectionError: ("socket_path",),
    DirtyWorkerError: ("worker_id", "traceback"),
    DirtyAppError: ("app_path", "action", "traceback"),
    DirtyAppNotFoundError: ("app_path", "action", "traceback"),
    DirtyNoWorkersAvailableError: ("app_path",),
    StashTableNotFoundError: ("table_name",),
    StashKeyNotFoundError: ("table_name", "key"),
}


def error_from_wire(error_type, message, details=None):
    """The exception instance for an ERROR payload's error dict.

    The class is chosen by name (unknown names give DirtyError); message and
    details are kept as sent, and the class's attributes (traceback,
    app_path, action, timeout, ...) are filled from details, None if absent.
    """
    cls = ERROR_CLASSES.get(error_type if isinstance(error_type, str) else "", DirtyError)
    if not isinstance(details, dict):
        details = {}
    if message is None:
        message = "Unknown error"
    elif not isinstance(message, str):
        message = str(message)
    err = Exception.__new__(cls)
    err.message = message
    err.details = details
    Exception.__init__(err, message)
    for attr in _ATTRS.get(cls, ()):
        setattr(err, attr, details.get(attr))
    return err
