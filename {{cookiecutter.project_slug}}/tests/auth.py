"""What test clients send to pass the key checks: the operator's key (dead letters{% if cookiecutter.use_dashboard %}, dashboard{% endif %}),
and the API key of the job endpoints (template answer use_api_key)."""

TEST_OPERATOR_KEY = "operator-0123456789abcdefghijklmnop"
OPERATOR = {"X-Operator-Key": TEST_OPERATOR_KEY}
{% if cookiecutter.use_api_key -%}
TEST_API_KEY = "tests-0123456789abcdefghijklmnop"
AUTH = {"X-API-Key": TEST_API_KEY, **OPERATOR}
{%- else -%}
AUTH = dict(OPERATOR)  # the job endpoints are open: no API key
{%- endif %}
