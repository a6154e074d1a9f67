"""Jobs: a config dataclass in, documents out (no argparse here; the command line builds the configs).

:mod:`.attack`, :mod:`.certify` (and :mod:`.verify`), :mod:`.benchmark` (and ``corrupt``),
:mod:`.train`, :mod:`.stability`, :mod:`.demo`. Each runs its resumable units through
:mod:`shiftattack.runtime` and writes its files atomically.
"""
