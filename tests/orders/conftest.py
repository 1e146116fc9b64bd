from tests.genstore_sandbox import genstore_sandbox  # noqa: F401  (fixture)
