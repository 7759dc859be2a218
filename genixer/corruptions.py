"""TEMPORARY (issue 30): moved to :mod:`genixer.sources.negatives`, ``_free`` suffixes dropped. Removed once the
asset layer imports the new names."""

from genixer.sources.negatives import *  # noqa: F401,F403
from genixer.sources.negatives import CORRUPTIONS as FREE_CORRUPTIONS  # noqa: F401
from genixer.sources.negatives import Pool, accepted_answers, answer_type, build_pool, shifted_box  # noqa: F401
from genixer.sources.negatives import corrupt_pair as corrupt_pair_free  # noqa: F401
from genixer.sources.negatives import verification_records as verification_records_free  # noqa: F401
