"""TransferGAN (Wang et al. 2018): start G and D from a source model, train everything."""
from harness.registry import TRANSFERS
from variants.transfer.common import FromSource


@TRANSFERS.register("finetune")
class Finetune(FromSource):
    method = "finetune"

    def set_stage(self, G, D, iteration):
        return "finetune"
