"""PyYAML for the packaging tests. CMake may find a Python (pyenv's, say)
without it; Debian's has it (install-deps.sh installs python3-yaml), so the
test is run again under /usr/bin/python3 when this one lacks it."""
import os
import sys

try:
    import yaml  # noqa: F401
except ImportError:
    if sys.executable != "/usr/bin/python3" and os.path.exists("/usr/bin/python3"):
        os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)
    raise
