"""A DCGAN whose discriminator is fine-tuned as the real / fake detector."""
from data.runtime import import_tensorflow

import_tensorflow()  # first, so TensorFlow's start-up noise stays out of the terminal whatever imports it
