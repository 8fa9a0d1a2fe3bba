"""Exercise checks (moving into a package; see ``core``)."""
from .core import *  # noqa: F401,F403
from .core import (  # noqa: F401
    ERROR, FAILED, NOT_IMPLEMENTED, NOT_IMPLEMENTED_TEXT, PASSED, STATUS_MARK, __all__,
    _anil_step_reference, _ci95_reference, _label_remap_reference, _metasgd_step_reference,
    _prototypes_reference,
)
