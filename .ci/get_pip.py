# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Stand-in for get-pip.py, run by ansible-test to put pip into the virtualenvs it creates.

ansible-test downloads get-pip.py from ci-files.testing.ansible.com, which machines with only
PyPI access cannot reach; `make sanity` places this file in ansible-test's cache instead.
ensurepip plus an ordinary pip install of the requested packages does the same job.
"""

import subprocess
import sys

# get-pip.py options that plain pip does not know
GET_PIP_ONLY = ("--no-setuptools", "--no-wheel")

subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"], stdout=subprocess.DEVNULL)
subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet"]
                      + [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY])
