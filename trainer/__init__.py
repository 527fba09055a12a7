"""The DCGAN trainer. Everything in the project that needs TensorFlow lives in this package."""
