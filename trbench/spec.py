"""Old import path of trbench.config.spec, kept only for the report and quality modules (report*.py,
validation.py, outliers.py, plots.py, regression.py) until they move into trbench/report/ and
trbench/quality/; new code imports trbench.config.spec. The same module object, not a copy, so that
patching one patches the other."""

import sys

from trbench.config import spec as _module

sys.modules[__name__] = _module
