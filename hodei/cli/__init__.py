"""The ``hodei`` command line: click commands over :class:`hodei.sdk.Client`."""
