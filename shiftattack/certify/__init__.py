"""Certificates of shift robustness: exact enumeration, sound bounds, randomized smoothing.

- :func:`certify_exact`: every member of a finite set (sound and complete).
- :func:`~.bound.certify_bound`, :func:`~.smooth.smooth_certify`: the other two methods.

The ``certify`` job and ``verify`` live in :mod:`shiftattack.jobs.certify` and :mod:`shiftattack.jobs.verify`.
"""

from shiftattack.certify.document import CertificateError, load_certificate, state_sha256
from shiftattack.certify.exact import certify_exact

__all__ = [
    "certify_exact",
    "load_certificate",
    "CertificateError",
    "state_sha256",
]
