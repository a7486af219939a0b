"""One error type for everything a user can get wrong: the message names the model and the file or config key."""


class FactoryError(Exception):
    """A clear, user-facing error. `str()` is the whole message; the CLI prints it without a traceback."""

    def __init__(self, message: str, *, model: str | None = None, path: str | None = None, key: str | None = None):
        parts = []
        if model:
            parts.append(f"model '{model}'")
        if key:
            parts.append(f"config key '{key}'")
        if path:
            parts.append(f"file '{path}'")
        prefix = ", ".join(parts)
        super().__init__(f"{prefix}: {message}" if prefix else message)
        self.model, self.path, self.key = model, path, key


class WrongHost(FactoryError):
    """The job runs where it cannot (another backend version, no GPU of its compute capability, no free GPU): a
    fact about the host, not the job's inputs, so it is not recorded as the target's failure (scripts/engine_factory/failures.py)."""
