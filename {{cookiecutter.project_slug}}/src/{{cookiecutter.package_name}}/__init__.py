"""{{ cookiecutter.project_name }}: a FastAPI web app and an ARQ worker sharing one queue."""
