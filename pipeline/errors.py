"""The one base class of the errors the pipeline reports to the user (stage exit code 2)."""


class PipelineError(Exception):
    """An error with a message meant for the user: it names the key, file or service at fault."""
