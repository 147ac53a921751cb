"""Training from scratch: freshly initialised G and D, everything trains."""
from harness.errors import ConfigError
from harness.interfaces import Transfer
from harness.registry import TRANSFERS


@TRANSFERS.register("scratch")
class Scratch(Transfer):
    @classmethod
    def check_config(cls, params, spec, prefix):
        if spec.transfer.source is not None:
            raise ConfigError(
                f"{prefix}transfer.source", spec.transfer.source, "null (scratch uses no source model)"
            )
