"""Stand-in for pip's get-pip.py, which ansible-test downloads from a host that CI cannot reach.

ansible-test runs it as ``python get_pip_X_Y.py [pip install options] pip==X.Y ...`` in a fresh virtual
environment: bootstrap pip from the interpreter's bundled ensurepip wheel, then install what was asked
(from the package index) with the get-pip-only options removed.
"""

import subprocess
import sys

GET_PIP_ONLY_OPTIONS = ("--no-setuptools", "--no-wheel")


def main():
    subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"], stdout=subprocess.DEVNULL)
    args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY_OPTIONS]
    sys.exit(subprocess.call([sys.executable, "-m", "pip", "install"] + args))


if __name__ == "__main__":
    main()
