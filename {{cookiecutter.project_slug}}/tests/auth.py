"""What test clients send to pass the API-key check (template answer use_api_key)."""

{% if cookiecutter.use_api_key -%}
TEST_API_KEY = "tests-0123456789abcdefghijklmnop"
AUTH = {"X-API-Key": TEST_API_KEY}
{%- else -%}
AUTH: dict[str, str] = {}  # the job endpoints are open: no API key
{%- endif %}
