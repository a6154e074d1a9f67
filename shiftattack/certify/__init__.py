"""Certificates of shift robustness: exact enumeration, sound bounds, randomized smoothing.

- :func:`certify_exact`: every member of a finite set (sound and complete).
- :func:`run_certify`: the ``certify`` job (load, certify in resumable chunks, write the file).
- :func:`verify_certificate`: recompute a ``certificate.json`` against its model and data.
"""

from .document import CertificateError, load_certificate, state_sha256
from .exact import certify_exact
from .run import CertifyConfig, run_certify
from .verify import verify_certificate

__all__ = [
    "certify_exact",
    "run_certify",
    "CertifyConfig",
    "verify_certificate",
    "load_certificate",
    "CertificateError",
    "state_sha256",
]
