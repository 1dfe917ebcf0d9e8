"""The web app: `uvicorn {{ cookiecutter.package_name }}.web.app:create_app --factory`."""
