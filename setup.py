"""The compiled CPU kernels (sweep/models/_kernels.c); everything else is in pyproject.toml."""
from setuptools import Extension, setup

setup(
    ext_modules=[
        # LeNet's first convolution and 2x2 max pooling on the CPU (sweep/models/kernels.py), faster than
        # torch's kernels for their one input channel and six output channels (docs/benchmarks.md, "CPU
        # trials: channels-last, fused optimizer steps, pooling first, compiled kernels"). Optional: where
        # they cannot be compiled (no C compiler), the install goes on and trials choose torch's kernels.
        # -ffp-contract=off: no FMA, so every build sums alike.
        Extension(
            "sweep.models._kernels",
            sources=["sweep/models/_kernels.c"],
            extra_compile_args=["-O3", "-ffp-contract=off", "-Wno-psabi"],
            optional=True,
        ),
    ],
)
