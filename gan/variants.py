"""The GAN's stage-2 detectors, one entry each: the table gan.train trains from, compare.report plans its
comparisons from (each variant against its controls), and the learning curve and the bench's help name.
Adding a variant is one entry in VARIANTS.

A variant is a fresh sigmoid head on a discriminator's trunk. What differs: where the trunk starts (the
GAN's trained discriminator, or the same network from random weights), whether the main phase trains it,
what the head reads, and the recipe it is trained with ("dcgan": the head alone, then everything at a lower
Adam rate; "resnet": the resnet detector recipe itself, classifiers.registry.RESNET).
"""
import dataclasses

HEAD_LEARNING_RATE = 1e-3  # the warm-up's, and a probe's main phase
FINETUNE_LEARNING_RATE = 1e-4  # a trunk trained after the warm-up (the dcgan recipe)
RECIPES = ("dcgan", "resnet")


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str  # its runs' name (gan.train adds -labelsN and .seedS where it trains several)
    discriminator: str  # the GAN it is made from (gan.train --discriminator, gan.models.DISCRIMINATORS)
    pretrained: bool  # the trunk starts from the GAN's discriminator; False: the same network, untrained
    what: str  # one line for the help texts
    trunk_trained: bool = True  # False: the trunk stays frozen and only the head learns (a linear probe)
    reads_probe_features: bool = False  # the head reads the blocks of --probe-features, not the trunk's output
    learning_rate: float = FINETUNE_LEARNING_RATE  # the main phase's, with the dcgan recipe
    recipe: str = "dcgan"  # how it is trained: one of RECIPES
    controls: tuple = ()  # the variants that tell what its pretraining is worth; the report pairs them with it

    @property
    def role(self):
        """Which of the GAN's settings make a finished run of it (gan.config.STAGES): a probe also reads
        --probe-features."""
        return "probe" if self.reads_probe_features else "finetune"


VARIANTS = {v.name: v for v in (
    Variant("dcgan-discriminator", "dcgan", pretrained=True, controls=("dcgan-scratch", "dcgan-linear-probe"),
            what="the GAN's discriminator fine-tuned: the head alone, then everything at a lower rate"),
    Variant("dcgan-linear-probe", "dcgan", pretrained=True, trunk_trained=False, reads_probe_features=True,
            learning_rate=HEAD_LEARNING_RATE, what="a head on the frozen discriminator's --probe-features"),
    Variant("dcgan-scratch", "dcgan", pretrained=False,
            what="the discriminator's network from random weights, trained like dcgan-discriminator"),
    Variant("dcgan-resnet-discriminator", "resnet", pretrained=True, recipe="resnet",
            controls=("dcgan-resnet-scratch",),
            what="the resnet GAN's discriminator fine-tuned with the resnet detector recipe"),
    Variant("dcgan-resnet-scratch", "resnet", pretrained=False, recipe="resnet",
            what="the resnet recipe from random weights, paired seed by seed with dcgan-resnet-discriminator"),
)}


def variants_of(discriminator):
    """The variants gan.train --discriminator D trains from its GAN, in the table's order."""
    return [v for v in VARIANTS.values() if v.discriminator == discriminator]


def controls_from_random(name):
    """The controls of a variant that start from random weights: the pairs a learning curve judges."""
    return tuple(c for c in VARIANTS[name].controls if not VARIANTS[c].pretrained)
