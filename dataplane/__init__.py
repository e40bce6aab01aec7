"""pysozu's dataplane: the proxy's processes and their command protocol."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pysozu")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"
