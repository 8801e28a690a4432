"""The compiled CPU kernels (sweep/models/_kernels.c); everything else is in pyproject.toml."""
import warnings

from setuptools import Extension, setup

# setuptools' notice at every editable install of a package that sits in the project's root ("folders in your
# working directory with the same name as your package may take precedence"): here that folder is the package
# itself, and a user's look-alike modules are kept off the path by sweep (tests/test_user_folder.py). Nothing
# to act on, so the install says nothing.
warnings.filterwarnings("ignore", message="Editable installation")

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
