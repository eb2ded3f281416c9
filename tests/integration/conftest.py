from tests.support.databases import module_database_url  # noqa: F401 - a fixture
