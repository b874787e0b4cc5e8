"""A DCGAN whose discriminator is fine-tuned as the real / fake detector."""
