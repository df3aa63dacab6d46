# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Hypothesis without its per-example deadline: a deadline is a timing in a test, and on a loaded
machine it fails tests whose behaviour is right. Speed lives in bench/."""
from hypothesis import HealthCheck, settings

settings.register_profile("netpol", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("netpol")
